"""The OpenAPI 3.1 document of the REST and ``/v1`` API, served at ``GET /api/openapi.json``.

Built from the rules the daemon really applies, not copied from them: error codes, statuses and types
come from :mod:`errors`, request limits from :mod:`image_request` and the running config, the status
schema from the :mod:`snapshot` dataclasses, the models from the catalogue, and what each route requires
(token, signed URL, ``?token=``, body media types) from the router's :func:`server.route_policy`
declarations. ``tests/daemon/http/test_openapi.py`` checks the document against the router and against
real answers, so it cannot drift silently.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal

from aiohttp import web

from .. import __version__, errors
from ..commands import MODES
from ..config import Config
from ..errors import ErrorCode
from ..images import request as image_request
from ..images.catalogue import Catalogue
from ..images.formats import DEFAULT_COMPRESSION, DEFAULT_FORMAT, FORMATS
from ..llm.call import ENDPOINTS as LLM_ENDPOINTS
from ..signing import EXP_PARAM, SIG_PARAM
from ..status import Status
from ..web import asset_names
from .server import (
    BODY_METHODS, BRIDGE_KEY, DEFAULT_POLICY, MULTIPART, SESSION_COOKIE, TOKEN_PARAM, Access, RoutePolicy,
    route_policies,
)  # fmt: skip

OPENAPI_PATH = "/api/openapi.json"
DOCUMENT_KEY = web.AppKey("openapi_document", bytes)
ENVELOPE = "#/components/schemas/ErrorEnvelope"

Json = dict[str, Any]


# ------------------------------------------------------------------------------- error codes


def all_error_codes() -> list[ErrorCode]:
    """Every :class:`ErrorCode` defined in ``bridge/errors.py``, in definition order."""
    return [value for value in vars(errors).values() if isinstance(value, ErrorCode)]


# errors any route can answer: not tied to one operation
ANY_ROUTE = (errors.NOT_FOUND, errors.METHOD_NOT_ALLOWED, errors.FORBIDDEN_ORIGIN, errors.INTERNAL)
# what reading a JSON body can answer (web.read_json and the app's client_max_size)
JSON_BODY = (errors.INVALID_JSON, errors.BODY_TOO_LARGE)
# what rendering an image can answer, after the request itself was accepted
RENDER_ERRORS = (errors.WORKFLOW_INVALID, errors.SWITCH_FAILED, errors.UPSTREAM_FAILED, errors.ENGINE_UNAVAILABLE,
                 errors.RENDER_TIMEOUT, errors.CACHE_WRITE_FAILED)
STREAM_NOTE = ("With stream: true the answer is Server-Sent Events, starting with the first event: "
               "<kind>.partial_image (ImagePartialEvent) for up to partial_images of ComfyUI's latent previews, "
               "then one <kind>.completed (ImageCompletedEvent) per image, kind being image_generation or "
               "image_edit; a failure before the first event is the plain error answer, one after it an "
               "`event: error` whose data is the ErrorEnvelope.")


# ------------------------------------------------------------------------------- schemas from code


def _nullable(schema: Json) -> Json:
    if "$ref" in schema or "enum" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema.get("type")
    return {**schema, "type": [kind, "null"]} if isinstance(kind, str) else {"anyOf": [schema, {"type": "null"}]}


def schema_of(hint: Any) -> Json:
    """A JSON schema for one type hint of the snapshot dataclasses (what ``asdict`` + ``json`` make of it)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is type(None):
        return {"type": "null"}
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = schema_of(rest[0]) if len(rest) == 1 else {"anyOf": [schema_of(a) for a in rest]}
        return _nullable(inner) if len(rest) < len(args) else inner
    if origin is Literal:
        return {"type": "string", "enum": list(args)}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is str:
        return {"type": "string"}
    if origin in (tuple, list):
        return {"type": "array", "items": schema_of(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1])}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    raise TypeError(f"no JSON schema for {hint!r}")


def dataclass_schemas(root: type) -> dict[str, Json]:
    """``root`` and every dataclass it contains, as closed object schemas named after the class."""
    found: dict[str, Json] = {}

    def visit(cls: type) -> None:
        if cls.__name__ in found:
            return
        hints = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)
        found[cls.__name__] = {
            "type": "object",
            "properties": {f.name: schema_of(hints[f.name]) for f in fields},
            "required": [f.name for f in fields],
            "additionalProperties": False,
        }
        for f in fields:
            for candidate in (hints[f.name], *typing.get_args(hints[f.name])):
                if dataclasses.is_dataclass(candidate) and isinstance(candidate, type):
                    visit(candidate)

    visit(root)
    return found


# ------------------------------------------------------------------------------- hand-written shapes


def _obj(properties: Json, required: list[str] | None = None, *, closed: bool = True, **extra: Any) -> Json:
    schema: Json = {"type": "object", "properties": properties, "required": required or list(properties)}
    if closed:
        schema["additionalProperties"] = False
    return {**schema, **extra}


STRING = {"type": "string"}
NULL_STRING = {"type": ["string", "null"]}
BOOLEAN = {"type": "boolean"}
COUNT = {"type": "integer", "minimum": 0}
SECONDS = {"type": "number", "minimum": 0}


def error_envelope_schema() -> Json:
    codes = all_error_codes()
    return _obj(
        {
            "error": _obj(
                {
                    "code": {"type": "string", "enum": [c.code for c in codes], "description": "dotted, stable"},
                    "message": {"type": "string", "minLength": 1, "description": "for people"},
                    "type": {"type": "string", "enum": sorted({c.type for c in codes}), "description": "OpenAI's"},
                    "param": {**NULL_STRING, "description": "the offending request field, if one"},
                    "details": {"type": "object", "description": "machine-readable context"},
                }
            )
        },
        description="Every error, on every route (a superset of OpenAI's error shape).",
    )


def _image_fields(config: Config, catalogue: Catalogue, extras_names: tuple[str, ...], *, json_body: bool) -> Json:
    """The fields both image routes take, with the limits ``image_request.parse`` enforces
    (``extra_body`` only in a JSON body: a form sends hal0's extras as plain fields)."""
    image = config.image
    ir = image_request
    names = [spec.name for spec in catalogue.models()]
    all_extras: Json = {  # null = not given (the model's default)
        "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": ir.MAX_SEED},
        "steps": {"type": ["integer", "null"], "minimum": 1, "maximum": ir.MAX_STEPS},
        "cfg": {"type": ["number", "null"], "minimum": 0, "maximum": ir.MAX_CFG},
        "negative_prompt": {"type": ["string", "null"], "maxLength": ir.MAX_PROMPT_CHARS},
        "strength": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1, "default": ir.DEFAULT_STRENGTH,
                     "description": "KSampler denoise: how much of the source is repainted (above 0, at most 1)"},
    }  # fmt: skip
    extras = {key: all_extras[key] for key in extras_names}
    # exactly the sides the parser takes: multiples of SIZE_STEP from MIN_SIDE to max_side, spaces around
    sides = "|".join(str(side) for side in range(ir.MIN_SIDE, image.max_side + 1, ir.SIZE_STEP))
    size_pattern = f"^(auto|[ \\t]*(?:{sides})[xX](?:{sides})[ \\t]*)$"
    fields: Json = {
        "prompt": {"type": "string", "minLength": 1, "maxLength": ir.MAX_PROMPT_CHARS,
                   # not blank: one character that is not white space (Python counts \x1c-\x1f as space)
                   "pattern": "[^\\s\\x1c-\\x1f]", "description": "required; not blank"},
        "model": {**NULL_STRING, "default": image.default_model,
                  "description": "a curated model name or alias (case-insensitive); others are 404 "
                                 "image.model_not_curated",
                  "examples": names + sorted(catalogue.aliases())},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": image.max_n, "default": 1,
              "description": "images in one ComfyUI batch"},
        "size": {"type": ["string", "null"], "pattern": size_pattern, "default": "auto",
                 "description": f"WIDTHxHEIGHT, each side a multiple of {ir.SIZE_STEP} between {ir.MIN_SIDE} "
                                f"and {image.max_side}; auto = the model's size, else {image.default_size} "
                                "(edits: the source image's size, cut to multiples of 8)"},
        "response_format": {"type": ["string", "null"], "enum": [*ir.RESPONSE_FORMATS, None], "default": "url"},
        "output_format": {"type": ["string", "null"], "enum": [*FORMATS, None], "default": DEFAULT_FORMAT,
                          "description": "png is ComfyUI's own file; jpeg and webp are encoded by the bridge"},
        "output_compression": {"type": ["integer", "null"], "minimum": 0, "maximum": 100,
                               "default": DEFAULT_COMPRESSION,
                               "description": "quality of jpeg and webp (ignored for png, as OpenAI does)"},
        "stream": {"type": ["boolean", "null"], "default": False,
                   "description": "answer with Server-Sent Events (partial images, then completed)"},
        "partial_images": {"type": ["integer", "null"], "minimum": 0, "maximum": ir.MAX_PARTIAL_IMAGES,
                           "default": 0,
                           "description": "with stream: how many of ComfyUI's latent previews to send "
                                          "(needs ComfyUI started with --preview-method)"},
        **{key: {**value, "description": "hal0 extra (also accepted inside extra_body)"}
           for key, value in extras.items()},
    }  # fmt: skip
    if json_body:
        fields["extra_body"] = {
            "type": ["object", "null"], "properties": extras, "additionalProperties": False,
            "description": "hal0 extras for clients that send extra_body literally; a key given here and at top "
                           "level (both not null) is a 422",
        }  # fmt: skip
    return fields


def image_request_schema(config: Config, catalogue: Catalogue) -> Json:
    """The body of ``POST /v1/images/generations``."""
    properties: Json = {
        **_image_fields(config, catalogue, image_request.HAL0_EXTRAS, json_body=True),
        **{key: {"description": "OpenAI field: accepted and ignored"} for key in sorted(image_request.OPENAI_IGNORED)},
    }
    given = {"not": {"type": "null"}}
    twice = [
        {"required": [key, "extra_body"],
         "properties": {key: given, "extra_body": {"type": "object", "required": [key], "properties": {key: given}}}}
        for key in image_request.HAL0_EXTRAS
    ]  # fmt: skip
    return {
        "type": "object",
        "properties": properties,
        "required": ["prompt"],
        "additionalProperties": False,
        "not": {"anyOf": twice},
        "description": "Unknown fields are refused (422 request.unknown_field) so a typo never renders defaults. "
                       "A hal0 extra is given at top level or in extra_body, not in both (422).",
    }  # fmt: skip


def edit_request_schema(config: Config, catalogue: Catalogue) -> Json:
    """The multipart form of ``POST /v1/images/edits`` (text fields carry the same values as text)."""
    binary = {"type": "string", "format": "binary"}
    limit = config.image.max_upload_bytes
    properties: Json = {
        "image": {**binary, "description": f"PNG, JPEG or WebP, each side 64..{config.image.max_side}, at most "
                                            f"{limit} bytes (413 image.upload_too_large); without a mask, its "
                                            "transparent pixels (if any) are the ones repainted"},
        "image[]": {"type": "array", "items": binary, "description": "several images: the first is edited"},
        "mask": {**binary, "description": "PNG with alpha, the image's size: fully transparent = repaint "
                                          "(OpenAI's rule); else 422 image.invalid_mask"},
        **_image_fields(config, catalogue, image_request.EDIT_EXTRAS, json_body=False),
        **{key: {"description": "OpenAI field: accepted and ignored"} for key in sorted(image_request.EDIT_IGNORED)},
    }
    return {
        "type": "object",
        "properties": properties,
        "required": ["prompt"],
        "additionalProperties": False,
        "description": "One of image / image[] is required. Numbers and booleans are sent as text (n=2, "
                       "stream=true), as the openai client does; hal0 extras are plain fields.",
    }  # fmt: skip


def image_used_schema() -> Json:
    return _obj(
        {
            "model": STRING, "template": STRING, "checkpoint": STRING,
            "seed": {"type": "integer", "minimum": 0, "maximum": image_request.MAX_SEED},
            "steps": {"type": "integer", "minimum": 1}, "cfg": {"type": "number"},
            "sampler": STRING, "scheduler": STRING, "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
            "n": {"type": "integer", "minimum": 1}, "prompt_id": STRING, "cached": BOOLEAN,
            "output_format": {"enum": list(FORMATS)},
            "urls": {"type": "array", "items": STRING},
            "timings": {"type": "object", "additionalProperties": SECONDS},
            "edit": _obj({
                "mode": {"enum": ["img2img", "inpaint"]}, "strength": {"type": "number"},
                "mask": {"enum": ["mask", "image", "none"], "description": "which upload's alpha was the mask"},
                "source_size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
                "source_format": {"enum": ["png", "jpeg", "webp"]},
            }, description="edits only"),
            "index": {"type": "integer", "minimum": 0, "description": "stream events only: which image"},
        },
        ["model", "template", "checkpoint", "seed", "steps", "cfg", "sampler", "scheduler", "size", "n",
         "prompt_id", "cached", "output_format", "urls", "timings"],
        description="What was really used (and where the images are cached, also for b64_json).",
    )  # fmt: skip


def image_response_schema() -> Json:
    return _obj(
        {
            "created": {"type": "integer"},
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [_obj({"url": STRING}), _obj({"b64_json": {"type": "string", "minLength": 1}})]},
            },
            "output_format": {"enum": list(FORMATS)},
            "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
            "_hal0": {"$ref": "#/components/schemas/ImageUsed"},
        }
    )


def sse_event(data: Json, description: str, events: list[str] | None = None) -> Json:
    """One Server-Sent Event, parsed into its fields: the per-event schema that OpenAPI 3.2 calls
    ``itemSchema`` and 3.1 tools (schemathesis) read from ``schema``. ``data`` is JSON text."""
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"enum": events} if events else STRING,
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
            "id": STRING,
            "retry": {"type": "integer"},
        },
        "description": description,
    }


IMAGE_STREAM_EVENTS = [f"{kind}.{what}" for kind in ("image_generation", "image_edit")
                       for what in ("partial_image", "completed")] + ["error"]  # fmt: skip


def stream_event_schemas() -> dict[str, Json]:
    """The ``data`` of each SSE event of a streamed image request (the openai client's event models)."""
    common: Json = {
        "b64_json": {"type": "string", "minLength": 1}, "created_at": {"type": "integer"},
        "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"}, "quality": {"const": "auto"},
        "background": {"const": "opaque"},
    }
    tokens = _obj({"input_tokens": COUNT, "input_tokens_details": _obj({"image_tokens": COUNT, "text_tokens": COUNT}),
                   "output_tokens": COUNT, "total_tokens": COUNT}, description="always zeros: ComfyUI counts no tokens")
    return {
        "ImagePartialEvent": _obj(
            {"type": {"enum": ["image_generation.partial_image", "image_edit.partial_image"]}, **common,
             "output_format": {"enum": ["jpeg", "png"], "description": "the preview as ComfyUI encoded it"},
             "partial_image_index": {"type": "integer", "minimum": 0, "maximum": image_request.MAX_PARTIAL_IMAGES - 1}},
            description="event: image_generation.partial_image | image_edit.partial_image",
        ),
        "ImageCompletedEvent": _obj(
            {"type": {"enum": ["image_generation.completed", "image_edit.completed"]}, **common,
             "output_format": {"enum": list(FORMATS)}, "usage": tokens,
             "_hal0": {"$ref": "#/components/schemas/ImageUsed"}},
            description="event: image_generation.completed | image_edit.completed; one per image",
        ),
        "StreamError": {"$ref": ENVELOPE, "description": "event: error, once the stream has started"},
    }  # fmt: skip


def model_schema() -> Json:
    return _obj(
        {
            "id": STRING, "object": {"const": "model"}, "created": {"type": "integer"},
            "owned_by": STRING, "kind": {"const": "image"}, "aliases": {"type": "array", "items": STRING},
            "description": STRING, "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
            "steps": {"type": "integer", "minimum": 1},
        },
        description="A curated image model.",
    )  # fmt: skip


def llm_model_schema() -> Json:
    return _obj(
        {
            "id": STRING, "object": {"const": "model"}, "created": {"type": "integer"}, "owned_by": STRING,
            "kind": {"const": "llm"}, "slot": STRING, "aliases": {"type": "array", "items": STRING},
        },
        description="A model an LLM slot serves: declared in [slots.NAME] models, else read from the slot's "
                    "own /v1/models when it becomes ready (kept across restarts).",
    )  # fmt: skip


def llm_request_schema() -> Json:
    return {
        "type": "object",
        "properties": {"model": STRING, "stream": BOOLEAN},
        "description": "Any OpenAI (or llama.cpp) body; it reaches the slot byte for byte. The bridge reads only "
                    "`model` (routes the call: a slot's model id or alias; may be left out when there is one LLM "
                    "slot) and `stream`.",
    }  # fmt: skip


def info_schema() -> Json:
    return _obj(
        {
            "name": {"const": "hal0-bridge"}, "version": STRING, "api_version": {"type": "integer", "minimum": 1},
            "node_id": STRING, "hostname": STRING, "api_url": STRING,
            "auth_required": BOOLEAN, "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
            "capabilities": {"type": "array", "items": {"enum": ["images", "events", "arbiter", "llm", "mqtt"]}},
            "mqtt": _obj({"enabled": BOOLEAN, "base_topic": STRING, "commands": {"enum": ["all", "read_only"]},
                          "discovery": BOOLEAN}),
        },
        description="Who this bridge is; never secrets (served without auth).",
    )  # fmt: skip


# ------------------------------------------------------------------------------- operations


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: Json) -> Json:
    return {"description": description, "content": _json(schema)}


def _errors(*codes: ErrorCode) -> dict[str, Json]:
    """One response per status, listing its codes (``x-error-codes``), each in the envelope."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in dict.fromkeys((*codes, errors.FORBIDDEN_ORIGIN, errors.INTERNAL)):
        by_status.setdefault(code.status, []).append(code)
    out: dict[str, Json] = {}
    for status, group in sorted(by_status.items()):
        names = [c.code for c in group]
        response: Json = {
            "description": ", ".join(names),
            "content": _json({"$ref": ENVELOPE}),
            "x-error-codes": names,
        }
        if any(c.retry_after is not None for c in group):
            response["headers"] = {
                "Retry-After": {"description": "seconds; sent with " + ", ".join(
                    c.code for c in group if c.retry_after is not None), "schema": {"type": "integer"}}
            }
        out[str(status)] = response
    return out


def llm_operation(path: str) -> Json:
    """One LLM proxy route (they share their rules; see bridge/llm/service.py)."""
    name = {"/v1/chat/completions": "createChatCompletion", "/v1/completions": "createCompletion",
            "/v1/embeddings": "createEmbedding"}[path]  # fmt: skip
    any_json = {"type": "object", "description": "the slot's own answer, unchanged"}
    return {
        "operationId": name, "summary": f"{path.removeprefix('/v1/')} through the LLM slot that serves `model`",
        "description": "Routed by `model`; in generation mode (unpinned, llm.auto_switch on) the call waits in a "
                       "bounded FIFO while the GPU switches to inference (trigger `llm`). Answers and error "
                       "answers in OpenAI's shape come from the slot unchanged; `stream: true` is passed on as "
                       "Server-Sent Events chunk by chunk.",
        "requestBody": {"required": True, "content": _json(ref_llm_request())},
        "responses": {
            "200": {"description": "the slot's answer",
                    "content": {"application/json": {"schema": any_json},
                                "text/event-stream": {"schema": sse_event(
                                    {"description": "the slot's chunk as it sent it; the last data is [DONE]"},
                                    "the slot's own stream, chunk by chunk")}}},
            **_errors(errors.BODY_TOO_LARGE, errors.INVALID_JSON, errors.BODY_NOT_OBJECT,
                      errors.LLM_INVALID_REQUEST, errors.LLM_MODEL_NOT_FOUND, errors.LLM_QUEUE_FULL,
                      errors.IMAGE_MODE, errors.LLM_WAIT_TIMEOUT, errors.SWITCH_FAILED, errors.LLM_UPSTREAM_FAILED),
        },
    }  # fmt: skip


def ref_llm_request() -> Json:
    return {"$ref": "#/components/schemas/LlmRequest"}


def operations(config: Config, catalogue: Catalogue) -> dict[str, dict[str, Json]]:
    """path -> method -> operation (without security and its errors: :func:`add_trust` adds them from
    the route policies)."""

    def ref(name: str) -> Json:
        return {"$ref": f"#/components/schemas/{name}"}

    switch_body = _obj(
        {"mode": {"enum": list(MODES)}, "force": BOOLEAN, "pin": {"type": ["boolean", "null"]}},
        ["mode"],
        description="pin only with mode generation; force to inference drops running and pending renders",
        anyOf=[{"properties": {"mode": {"const": "generation"}}}, {"properties": {"pin": {"enum": [False, None]}}}],
    )
    switch_answer = _obj({"status": {"enum": ["switching", "noop"]}, "mode": {"enum": list(MODES)}})
    image_ok = {
        "description": "the images (JSON), or with stream: true an event stream",
        "content": {
            "application/json": {"schema": ref("ImageResponse")},
            "text/event-stream": {"schema": sse_event(
                {"oneOf": [ref("ImagePartialEvent"), ref("ImageCompletedEvent"), ref("StreamError")]},
                "partial images, then one completed event per image; error once the stream has started",
                IMAGE_STREAM_EVENTS,
            )},
        },
    }
    return {
        "/api/info": {"get": {
            "operationId": "info", "summary": "Name, version, node id, models and capabilities",
            "responses": {"200": _ok("this bridge", ref("Info")), **_errors()},
        }},
        "/api/comfyui/status": {"get": {
            "operationId": "status", "summary": "The status snapshot; always 200, served from memory",
            "responses": {"200": _ok("the snapshot", ref("Status")), **_errors()},
        }},
        "/api/comfyui/switchover": {"post": {
            "operationId": "switchover", "summary": "Hand the GPU to generation or inference",
            "description": "Checks in order: body (422; malformed JSON too, an unknown field is "
                           "request.unknown_field), no arbiter (503), a switch in flight (409), already in the mode "
                           "(200 noop, pin still applied), busy queue without force (409), pinned without force "
                           "(409), else 202 and the switch runs in the background (poll switchover).",
            "requestBody": {"required": True, "content": _json(switch_body)},
            "responses": {
                "200": _ok("already in that mode", switch_answer),
                "202": _ok("switch started", switch_answer),
                **_errors(*JSON_BODY, errors.INVALID_MODE, errors.UNKNOWN_FIELD,
                          errors.SWITCH_IN_PROGRESS, errors.BUSY, errors.PINNED, errors.ARBITER_UNAVAILABLE),
            },
        }},
        "/api/comfyui/pin": {"post": {
            "operationId": "pin", "summary": "Hold generation mode against idle-restore",
            "requestBody": {"required": True, "content": _json(_obj({"pinned": BOOLEAN}))},
            "responses": {
                "200": _ok("the pin as now set", _obj({"pinned": BOOLEAN})),
                **_errors(*JSON_BODY, errors.INVALID_PIN, errors.UNKNOWN_FIELD,
                          errors.SWITCH_IN_PROGRESS, errors.NOT_GENERATION, errors.ARBITER_UNAVAILABLE),
            },
        }},
        "/api/mqtt/discovery": {"post": {
            "operationId": "mqtt_discovery", "summary": "Turn the bridge's own Home Assistant MQTT discovery on or off",
            "description": "Kept in state_dir across restarts, over [mqtt] discovery; off removes the entities "
                           "(empty retained config). The Home Assistant integration's repair uses it.",
            "requestBody": {"required": True, "content": _json(_obj({"enabled": BOOLEAN}))},
            "responses": {
                "200": _ok("discovery as now set", _obj({"enabled": BOOLEAN, "source": {"enum": ["config", "api"]}})),
                **_errors(*JSON_BODY, errors.UNAUTHORIZED, errors.INVALID_DISCOVERY, errors.MQTT_DISABLED),
            },
        }},
        "/api/comfyui/cancel": {"post": {
            "operationId": "cancel", "summary": "Drop pending renders and interrupt the running one",
            "description": "The body is ignored.",
            "responses": {
                "200": _ok("cancelled", _obj({"status": {"const": "cancelled"}, "dropped_pending": COUNT,
                                              "interrupted": COUNT})),
                **_errors(errors.UPSTREAM_FAILED, errors.ENGINE_UNAVAILABLE),
            },
        }},
        "/v1/images/generations": {"post": {
            "operationId": "createImage", "summary": "OpenAI-compatible image generation through ComfyUI",
            "description": "Everything is validated before the GPU is touched; then the bridge switches to "
                           "generation if needed (waiting for a switch in flight), renders the model's template "
                           "and caches the images. " + STREAM_NOTE,
            "requestBody": {"required": True, "content": _json(ref("ImageRequest"))},
            "responses": {
                "200": image_ok,
                **_errors(*JSON_BODY, errors.BODY_NOT_OBJECT, errors.UNKNOWN_FIELD,
                          errors.PROMPT_REQUIRED, errors.INVALID_PARAMETER, errors.MODEL_NOT_CURATED,
                          errors.INVALID_N, errors.INVALID_SIZE, *RENDER_ERRORS),
            },
        }},
        "/v1/images/edits": {"post": {
            "operationId": "createImageEdit", "summary": "OpenAI-compatible image edit (img2img, inpainting)",
            "description": "multipart/form-data as the openai client sends it. The image and mask are checked "
                           "before the GPU is touched, then uploaded to ComfyUI's temp folder under a bounded "
                           "set of names and rendered through the model's img2img template (no mask, opaque "
                           "image) or inpaint template (a mask, or an image with transparent pixels). "
                           + STREAM_NOTE,
            "requestBody": {"required": True, "content": {MULTIPART: {"schema": ref("EditRequest")}}},
            "responses": {
                "200": image_ok,
                **_errors(errors.INVALID_FORM, errors.BODY_TOO_LARGE, errors.UPLOAD_TOO_LARGE, errors.UNKNOWN_FIELD,
                          errors.PROMPT_REQUIRED, errors.INVALID_PARAMETER, errors.MODEL_NOT_CURATED,
                          errors.INVALID_N, errors.INVALID_SIZE, errors.INVALID_IMAGE, errors.INVALID_MASK,
                          *RENDER_ERRORS),
            },
        }},
        "/v1/models": {"get": {
            "operationId": "listModels", "summary": "LLM and image models, each with its kind (OpenAI list shape)",
            "responses": {
                "200": _ok("models", _obj({"object": {"const": "list"},
                                           "data": {"type": "array",
                                                    "items": {"anyOf": [ref("LlmModel"), ref("Model")]}}})),
                **_errors(),
            },
        }},
        **{path: {"post": llm_operation(path)} for path in LLM_ENDPOINTS},
        "/api/images/cache/{name}": {"get": {
            "operationId": "cachedImage", "summary": "A generated image, by the name in its URL",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}\\.(png|jpg|webp)$"}}],
            "responses": {
                "200": {"description": "the image in its output format; immutable cache headers",
                        "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                        "content": {f.content_type: {"schema": {"type": "string", "format": "binary"}}
                                    for f in FORMATS.values()}},
                **_errors(errors.CACHE_MISS),
            },
        }},
        "/api/events": {"get": {
            "operationId": "events", "summary": "Server-Sent Events: status snapshots and events",
            "description": "`event: status` with the whole Status on connect and on every change (a slow reader "
                           "only gets the newest); other event names carry events (switch_started, "
                           "switch_finished, switch_failed, image_generated, render_failed, ...) as JSON with "
                           f"`type` and `time`; a `: ping` comment every {config.server.sse_ping_interval:g} s.",
            "responses": {
                "200": {"description": "an endless event stream",
                        "content": {"text/event-stream": {"schema": sse_event(
                            {"description": "event status: the Status; any other: an event with type and time"},
                            "one status snapshot or event")}}},
                **_errors(),
            },
        }},
        "/": {"get": {
            "operationId": "page", "summary": "The Image-Gen page (live from /api/events; asks for the token itself)",
            "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": STRING}}}, **_errors()},
        }},
        "/ui/{name}": {"get": {
            "operationId": "pageAsset", "summary": "A static file of the page (only the files the package ships)",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": asset_names()}}],
            "responses": {
                "200": {"description": "the file, with an ETag",
                        "content": {t: {"schema": STRING} for t in ("text/css", "text/javascript")}},
                "304": {"description": "unchanged (If-None-Match)"},
                **_errors(errors.NOT_FOUND),
            },
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus text format (docs/metrics.md); no token, like status",
            "responses": {
                "200": {"description": "metrics", "content": {"text/plain": {"schema": STRING}}},
                **_errors(),
            },
        }},
        "/comfyui": {"get": {
            "operationId": "comfyuiRedirect", "summary": "Redirect to /comfyui/ (the UI's asset paths are relative)",
            "responses": {"308": {"description": "Location: /comfyui/"}, **_errors()},
        }},
        "/comfyui/{path}": {
            method: {
                "operationId": f"comfyui{method.capitalize()}",
                "summary": "ComfyUI's own web UI and API, passed through (the URL to give ComfyUI users)",
                "description": "Requests and answers pass through as sent (ComfyUI's statuses, bodies and "
                               "headers), the websocket too (GET /comfyui/ws with Upgrade). POST "
                               "/comfyui/prompt and /comfyui/api/prompt first switch the GPU to generation "
                               "(waiting like an image request) and count as image activity; websockets never "
                               "switch. ComfyUI sees its own Origin, not the browser's.",
                "parameters": [{"name": "path", "in": "path", "required": True, "schema": STRING,
                                "description": "ComfyUI's path, e.g. api/prompt, view, ws, assets/..."}],
                "responses": {
                    "default": {"description": "ComfyUI's own answer, as it sent it"},
                    **_errors(errors.ENGINE_UNAVAILABLE,
                              *((errors.SWITCH_FAILED,) if method == "post" else ())),
                },
            }
            for method in ("get", "post", "put", "patch", "delete")
        },
        OPENAPI_PATH: {"get": {
            "operationId": "openapi", "summary": "This document",
            "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"}), **_errors()},
        }},
    }  # fmt: skip


def _merge_errors(op: Json, *codes: ErrorCode) -> None:
    """Add error codes to an operation's responses (one response per status, codes deduplicated)."""
    for status, response in _errors(*codes).items():
        have = op["responses"].setdefault(status, response)
        if have is not response:
            names = list(dict.fromkeys([*have.get("x-error-codes", []), *response["x-error-codes"]]))
            have["x-error-codes"] = names
            have["description"] = ", ".join(names)


SECURITY_OF: dict[Access, list[Json]] = {
    Access.OPEN: [],
    Access.TOKEN: [{"bearer": []}],
    Access.SIGNED: [{"bearer": []}, {"signedUrl": []}],
    Access.TOKEN_QUERY: [{"bearer": []}, {"tokenQuery": []}],
    Access.BROWSER: [{"bearer": []}, {"sessionCookie": []}],
}
ERRORS_OF = {
    Access.OPEN: (),
    Access.TOKEN: (errors.UNAUTHORIZED,),
    Access.SIGNED: (errors.UNAUTHORIZED, errors.SIGNATURE_EXPIRED, errors.SIGNATURE_INVALID),
    Access.TOKEN_QUERY: (errors.UNAUTHORIZED,),
    Access.BROWSER: (errors.UNAUTHORIZED,),
}
QUERY_PARAMETERS = {
    Access.SIGNED: [
        {"name": EXP_PARAM, "in": "query", "required": False, "schema": {"type": "string"},
         "description": "signed URL: expiry, epoch seconds (with sig; both come in the image URLs the bridge hands "
                        "out). Ignored when a valid bearer token is sent"},
        {"name": SIG_PARAM, "in": "query", "required": False, "schema": {"type": "string"},
         "description": "signed URL: base64url HMAC-SHA256 over the path and exp with the install's key"},
    ],
    Access.TOKEN_QUERY: [
        {"name": TOKEN_PARAM, "in": "query", "required": False, "schema": {"type": "string"},
         "description": "server.token, for clients that cannot send headers (a browser EventSource)"},
    ],
}  # fmt: skip


def add_trust(paths: dict[str, dict[str, Json]], policies: dict[tuple[str, str], RoutePolicy], token_set: bool) -> None:
    """Security, query credentials and the errors they answer, per operation, from its route policy."""
    for path, methods in paths.items():
        for method, op in methods.items():
            policy = policies.get((method.upper(), path), DEFAULT_POLICY)
            security = list(SECURITY_OF[policy.access])
            # with no token configured the bridge lets everyone in (loopback only)
            op["security"] = security + [{}] if security and not token_set else security
            op.setdefault("parameters", []).extend(QUERY_PARAMETERS.get(policy.access, []))
            if not op["parameters"]:
                del op["parameters"]
            codes = list(ERRORS_OF[policy.access])
            if method.upper() in BODY_METHODS:
                codes.append(errors.UNSUPPORTED_MEDIA_TYPE)
                op["x-accepts"] = list(policy.accepts)
            _merge_errors(op, *codes)


def build_document(
    config: Config, catalogue: Catalogue, policies: dict[tuple[str, str], RoutePolicy] | None = None
) -> Json:
    """The whole OpenAPI 3.1 document for this configuration (limits, models and auth come from it)."""
    paths = operations(config, catalogue)
    add_trust(paths, policies or {}, bool(config.server.token))
    schemas: dict[str, Json] = {
        "ErrorEnvelope": error_envelope_schema(),
        "ImageRequest": image_request_schema(config, catalogue),
        "ImageResponse": image_response_schema(),
        "ImageUsed": image_used_schema(),
        "EditRequest": edit_request_schema(config, catalogue),
        **stream_event_schemas(),
        "Model": model_schema(),
        "LlmModel": llm_model_schema(),
        "LlmRequest": llm_request_schema(),
        "Info": info_schema(),
        **dataclass_schemas(Status),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hal0-bridge",
            "version": __version__,
            "description": "Owns one GPU and hands it between LLM slots and ComfyUI. Every error uses the "
                           "ErrorEnvelope; a 503 with a retry hint also sends Retry-After. Bodies larger than "
                           f"{config.server.max_body_bytes} bytes are refused with 413.",
        },
        "servers": [{"url": config.server.public_url or "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "server.token; when one is configured every route needs it except "
                                          "status, info and /metrics (docs/security.md)"},
                "signedUrl": {"type": "apiKey", "in": "query", "name": SIG_PARAM,
                              "description": "a signed, expiring image URL as the bridge hands it out "
                                             f"(?{EXP_PARAM}=...&{SIG_PARAM}=...; valid "
                                             f"{config.server.signed_url_ttl} s): works in <img src>"},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": TOKEN_PARAM,
                               "description": "server.token as ?token=, only on /api/events (EventSource)"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                                  "description": "browsers on /comfyui/: opening /comfyui/?token=<server.token> "
                                                 "once answers 303 with this cookie (HttpOnly, SameSite=Lax, Path=/comfyui)"},
            },
        },
        "x-error-codes": [
            {"code": c.code, "status": c.status, "type": c.type, "retry_after": c.retry_after}
            for c in all_error_codes()
        ],
        "x-any-route-error-codes": [c.code for c in ANY_ROUTE],
    }  # fmt: skip


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT_KEY], content_type="application/json")


def setup(app: web.Application) -> None:
    """Register ``GET /api/openapi.json``; the document is built once, from the bridge's config."""
    bridge = app[BRIDGE_KEY]
    document = build_document(bridge.config, bridge.catalogue, route_policies(app))
    app[DOCUMENT_KEY] = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    app.router.add_get(OPENAPI_PATH, openapi_json)
