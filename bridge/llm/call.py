"""One LLM call as the proxy sees it: which endpoint, which model, streamed or not, and the body.

The body is passed to the slot byte for byte. It is parsed once, here, only to read the two fields
the bridge decides on (``model`` routes the call, ``stream`` says how the answer comes back) and to
refuse what is not a JSON object before any GPU work. Every other field is the slot's business, so a
llama.cpp extension (``cache_prompt``, ``n_probs``, ``grammar``, ...) reaches it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..errors import ApiError

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_REQUEST_ID = 128  # characters of a client's X-Request-Id kept for events and logs


@dataclass(frozen=True, slots=True)
class LlmCall:
    endpoint: str
    model: str | None
    stream: bool
    body: bytes
    request_id: str | None = None  # the client's X-Request-Id, echoed in llm_* events


def parse(endpoint: str, raw: bytes, request_id: str | None = None) -> LlmCall:
    """The call in ``raw``: 400 ``request.invalid_json`` for bad JSON, 422 for a non-object body or a
    ``model`` that is not a string / ``stream`` that is not a boolean (the slot would refuse them too,
    but the bridge must know them to route)."""
    if not raw.strip():
        raise ApiError(errors.INVALID_JSON, "request body is empty; expected JSON")
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(errors.INVALID_JSON, f"request body is not valid JSON: {err}") from None
    except RecursionError:
        raise ApiError(errors.INVALID_JSON, "request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(errors.BODY_NOT_OBJECT, "request body must be a JSON object")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(errors.LLM_INVALID_REQUEST, "model must be a string", param="model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(errors.LLM_INVALID_REQUEST, "stream must be true or false", param="stream")
    return LlmCall(
        endpoint=endpoint, model=model or None, stream=stream, body=raw, request_id=(request_id or "")[:MAX_REQUEST_ID] or None
    )
