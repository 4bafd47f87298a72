"""The MQTT wire shapes, parsed at the edge: command payloads in, state payloads out.

Commands arrive as plain words (``generation``, ``ON``) or JSON objects; every parser raises
:class:`~hal0_bridge.errors.ApiError` with the same codes REST uses, so a refusal reads the same on
both paths. ``transaction`` is taken out of a request and echoed in its answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..encoding import json_bytes
from ..errors import ApiError
from .topics import Topics

PIN_WORDS = {"on": True, "true": True, "off": False, "false": False}


def to_json(data: Any) -> bytes:
    return json_bytes(data, default=str)  # echoed user text may hold lone surrogates


def state_payloads(topics: Topics, status: dict[str, Any]) -> dict[str, bytes]:
    """The retained state topics and their payloads for one status snapshot (``Status.to_dict()``)."""
    return {
        topics.status: to_json(status),
        topics.mode: str(status.get("mode", "")).encode(),
        topics.engine: str(status.get("engine", "")).encode(),
        topics.pinned: b"ON" if status.get("pinned") else b"OFF",
        topics.queue: to_json(status.get("queue")),
        topics.memory: to_json(status.get("memory")),
        topics.switchover: to_json(status.get("switchover")),
        topics.llm_state: to_json(status.get("llm")),
        topics.gpu: to_json(status.get("gpu")),
    }


@dataclass(slots=True)
class Reply:
    """Where and how to answer one command or request."""

    action: str
    topic: str
    correlation: bytes | None = None
    transaction: Any = None


def payload_text(payload: bytes, max_bytes: int) -> str:
    """A command's payload as text: bounded, UTF-8, stripped."""
    if len(payload) > max_bytes:
        raise ApiError(
            errors.BODY_TOO_LARGE,
            "payload is too large",
            details={"max_bytes": max_bytes, "actual_bytes": len(payload)},
        )
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ApiError(errors.INVALID_JSON, "payload is not UTF-8 text") from None

def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ApiError(errors.INVALID_JSON, f"payload is not valid JSON: {err}") from None

def parse_request(text: str, reply: Reply) -> Any:
    """A request body: a JSON object (or nothing); ``transaction`` is taken out and echoed."""
    if not text:
        return {}
    body = _loads(text)
    if not isinstance(body, dict):
        raise ApiError(errors.BODY_NOT_OBJECT, "request payload must be a JSON object")
    reply.transaction = body.pop("transaction", None)
    return body

def parse_mode_set(text: str, reply: Reply) -> Any:
    """``generation`` / ``inference`` as plain text, or a JSON object ``{mode, force, pin}``."""
    if text.startswith(("{", "[", '"')):
        try:
            body = _loads(text)
        except ApiError as err:  # the same answer as REST for a malformed body
            raise ApiError(errors.INVALID_MODE, err.message, param="mode") from None
        if isinstance(body, str):
            return {"mode": body}
        if not isinstance(body, dict):
            raise ApiError(
                errors.INVALID_MODE, 'expected "generation", "inference" or {"mode": ..., "force": ...}'
            )
        reply.transaction = body.pop("transaction", None)
        return body
    return {"mode": text.lower()}

def parse_pin_set(text: str, reply: Reply) -> Any:
    """``ON``/``OFF``/``true``/``false`` (any case), or a JSON object ``{"pinned": bool}``."""
    if text.startswith("{"):
        try:
            body = _loads(text)
        except ApiError as err:
            raise ApiError(errors.INVALID_PIN, err.message, param="pinned") from None
        if isinstance(body, dict):
            reply.transaction = body.pop("transaction", None)
        return body
    if text.lower() in PIN_WORDS:
        return {"pinned": PIN_WORDS[text.lower()]}
    raise ApiError(errors.INVALID_PIN, "pin/set expects ON, OFF, true or false", param="pinned")
