"""The OpenAPI 3.1 document of the REST and ``/v1`` API, served at ``GET /api/openapi.json``.

Built from the rules the daemon really applies, not copied from them: error codes, statuses and types
come from :mod:`errors`, request limits from :mod:`image_request` and the running config, the status
schema from the :mod:`snapshot` dataclasses, the models from the catalogue, and which routes need the
bearer token from :func:`web.path_requires_token`. ``tests/daemon/test_openapi.py`` checks the document
against the router and against real answers, so it cannot drift silently.
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
from ..status import Status
from .server import BRIDGE_KEY, path_requires_token

OPENAPI_PATH = "/api/openapi.json"
DOCUMENT_KEY = web.AppKey("openapi_document", bytes)
ENVELOPE = "#/components/schemas/ErrorEnvelope"

Json = dict[str, Any]


# ------------------------------------------------------------------------------- error codes


def all_error_codes() -> list[ErrorCode]:
    """Every :class:`ErrorCode` defined in ``bridge/errors.py``, in definition order."""
    return [value for value in vars(errors).values() if isinstance(value, ErrorCode)]


# errors any route can answer: not tied to one operation
ANY_ROUTE = (errors.NOT_FOUND, errors.METHOD_NOT_ALLOWED, errors.INTERNAL)
# what reading a JSON body can answer (web.read_json and the app's client_max_size)
JSON_BODY = (errors.INVALID_JSON, errors.BODY_TOO_LARGE)


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
    if dataclasses.is_dataclass(hint):
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


def image_request_schema(config: Config, catalogue: Catalogue) -> Json:
    """The body of ``POST /v1/images/generations``, with the limits ``image_request.parse`` enforces."""
    image = config.image
    ir = image_request
    names = [spec.name for spec in catalogue.models()]
    extras: Json = {
        "seed": {"type": "integer", "minimum": 0, "maximum": ir.MAX_SEED},
        "steps": {"type": "integer", "minimum": 1, "maximum": ir.MAX_STEPS},
        "cfg": {"type": "number", "minimum": 0, "maximum": ir.MAX_CFG},
        "negative_prompt": {"type": "string", "maxLength": ir.MAX_PROMPT_CHARS},
    }
    size_pattern = f"^(auto|{ir.SIZE_RE.pattern.strip('^$')})$"
    properties: Json = {
        "prompt": {"type": "string", "minLength": 1, "maxLength": ir.MAX_PROMPT_CHARS,
                   "description": "required; not blank"},
        "model": {**NULL_STRING, "default": image.default_model,
                  "description": "a curated model name or alias (case-insensitive); others are 404 "
                                 "image.model_not_curated",
                  "examples": names + sorted(catalogue.aliases())},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": image.max_n, "default": 1,
              "description": "images in one ComfyUI batch"},
        "size": {"type": ["string", "null"], "pattern": size_pattern, "default": "auto",
                 "description": f"WIDTHxHEIGHT, each side a multiple of {ir.SIZE_STEP} between {ir.MIN_SIDE} "
                                f"and {image.max_side}; auto = the model's size, else {image.default_size}"},
        "response_format": {"type": ["string", "null"], "enum": [*ir.RESPONSE_FORMATS, None], "default": "url"},
        **{key: {**value, "description": "hal0 extra (also accepted inside extra_body)"}
           for key, value in extras.items()},
        "extra_body": {"type": ["object", "null"], "properties": extras, "additionalProperties": False,
                       "description": "hal0 extras for clients that send extra_body literally; a key given "
                                      "here and at top level with different values is a 422"},
        **{key: {"description": "OpenAI field: accepted and ignored"} for key in sorted(ir.OPENAI_IGNORED)},
    }  # fmt: skip
    return {
        "type": "object",
        "properties": properties,
        "required": ["prompt"],
        "additionalProperties": False,
        "description": "Unknown fields are refused (422 request.unknown_field) so a typo never renders defaults.",
    }


def image_response_schema() -> Json:
    used = _obj(
        {
            "model": STRING, "template": STRING, "checkpoint": STRING,
            "seed": {"type": "integer", "minimum": 0, "maximum": image_request.MAX_SEED},
            "steps": {"type": "integer", "minimum": 1}, "cfg": {"type": "number"},
            "sampler": STRING, "scheduler": STRING, "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"},
            "n": {"type": "integer", "minimum": 1}, "prompt_id": STRING, "cached": BOOLEAN,
            "urls": {"type": "array", "items": STRING},
            "timings": {"type": "object", "additionalProperties": SECONDS},
        },
        description="What was really used (and where the images are cached, also for b64_json).",
    )  # fmt: skip
    return _obj(
        {
            "created": {"type": "integer"},
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {"oneOf": [_obj({"url": STRING}), _obj({"b64_json": {"type": "string", "minLength": 1}})]},
            },
            "_hal0": used,
        }
    )


def model_schema() -> Json:
    return _obj(
        {
            "id": STRING, "object": {"const": "model"}, "created": {"type": "integer"},
            "owned_by": STRING, "aliases": {"type": "array", "items": STRING}, "description": STRING,
            "size": {"type": "string", "pattern": "^[0-9]+x[0-9]+$"}, "steps": {"type": "integer", "minimum": 1},
        }
    )  # fmt: skip


def info_schema() -> Json:
    return _obj(
        {
            "name": {"const": "hal0-bridge"}, "version": STRING, "api_version": {"type": "integer", "minimum": 1},
            "node_id": STRING, "hostname": STRING, "api_url": STRING,
            "auth_required": BOOLEAN, "models": {"type": "array", "items": {"$ref": "#/components/schemas/Model"}},
            "capabilities": {"type": "array", "items": {"enum": ["images", "events", "arbiter", "mqtt"]}},
            "mqtt": _obj({"enabled": BOOLEAN, "base_topic": STRING, "discovery": BOOLEAN}),
        },
        description="Who this bridge is; never secrets (served without auth).",
    )  # fmt: skip


# ------------------------------------------------------------------------------- operations


def protected(method: str, path: str) -> bool:
    return path_requires_token(method.upper(), path)


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: Json) -> Json:
    return {"description": description, "content": _json(schema)}


def _errors(*codes: ErrorCode) -> dict[str, Json]:
    """One response per status, listing its codes (``x-error-codes``), each in the envelope."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in (*codes, errors.INTERNAL):
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


def operations(config: Config, catalogue: Catalogue) -> dict[str, dict[str, Json]]:
    """path -> method -> operation (without security, added from the auth rule afterwards)."""
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    switch_body = _obj(
        {"mode": {"enum": list(MODES)}, "force": BOOLEAN, "pin": BOOLEAN},
        ["mode"],
        description="pin only with mode generation; force to inference drops running and pending renders",
    )
    switch_answer = _obj({"status": {"enum": ["switching", "noop"]}, "mode": {"enum": list(MODES)}})
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
            "description": "Checks in order: body (422), a switch in flight (409), already in the mode (200 noop, "
                           "pin still applied), busy queue without force (409), pinned without force (409), no "
                           "arbiter (503), else 202 and the switch runs in the background (poll switchover).",
            "requestBody": {"required": True, "content": _json(switch_body)},
            "responses": {
                "200": _ok("already in that mode", switch_answer),
                "202": _ok("switch started", switch_answer),
                **_errors(*JSON_BODY, errors.UNAUTHORIZED, errors.INVALID_MODE, errors.SWITCH_IN_PROGRESS,
                          errors.BUSY, errors.PINNED, errors.ARBITER_UNAVAILABLE),
            },
        }},
        "/api/comfyui/pin": {"post": {
            "operationId": "pin", "summary": "Hold generation mode against idle-restore",
            "requestBody": {"required": True, "content": _json(_obj({"pinned": BOOLEAN}))},
            "responses": {
                "200": _ok("the pin as now set", _obj({"pinned": BOOLEAN})),
                **_errors(*JSON_BODY, errors.UNAUTHORIZED, errors.INVALID_PIN, errors.ARBITER_UNAVAILABLE),
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
                **_errors(errors.UNAUTHORIZED, errors.UPSTREAM_FAILED, errors.ENGINE_UNAVAILABLE),
            },
        }},
        "/v1/images/generations": {"post": {
            "operationId": "createImage", "summary": "OpenAI-compatible image generation through ComfyUI",
            "description": "Everything is validated before the GPU is touched; then the bridge switches to "
                           "generation if needed (waiting for a switch in flight), renders the model's template "
                           "and caches the images.",
            "requestBody": {"required": True, "content": _json(ref("ImageRequest"))},
            "responses": {
                "200": _ok("the images", ref("ImageResponse")),
                **_errors(*JSON_BODY, errors.UNAUTHORIZED, errors.BODY_NOT_OBJECT, errors.UNKNOWN_FIELD,
                          errors.PROMPT_REQUIRED, errors.INVALID_PARAMETER, errors.MODEL_NOT_CURATED,
                          errors.INVALID_N, errors.INVALID_SIZE, errors.WORKFLOW_INVALID, errors.SWITCH_FAILED,
                          errors.UPSTREAM_FAILED, errors.ENGINE_UNAVAILABLE, errors.RENDER_TIMEOUT,
                          errors.CACHE_WRITE_FAILED),
            },
        }},
        "/v1/models": {"get": {
            "operationId": "listModels", "summary": "The curated image models (OpenAI list shape)",
            "responses": {
                "200": _ok("models", _obj({"object": {"const": "list"},
                                           "data": {"type": "array", "items": ref("Model")}})),
                **_errors(errors.UNAUTHORIZED),
            },
        }},
        "/api/images/cache/{name}": {"get": {
            "operationId": "cachedImage", "summary": "A generated image, by the name in its URL",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}\\.png$"}}],
            "responses": {
                "200": {"description": "the PNG; immutable cache headers",
                        "headers": {"Cache-Control": {"schema": {"type": "string"}}},
                        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
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
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                **_errors(),
            },
        }},
        OPENAPI_PATH: {"get": {
            "operationId": "openapi", "summary": "This document",
            "responses": {"200": _ok("OpenAPI 3.1", {"type": "object"}), **_errors()},
        }},
    }  # fmt: skip


def build_document(config: Config, catalogue: Catalogue) -> Json:
    """The whole OpenAPI 3.1 document for this configuration (limits, models and auth come from it)."""
    paths = operations(config, catalogue)
    auth_on = bool(config.server.token)
    for path, methods in paths.items():
        for method, op in methods.items():
            if protected(method, path):
                # with no token configured the bridge lets everyone in (loopback only)
                op["security"] = [{"bearer": []}] if auth_on else [{"bearer": []}, {}]
            else:
                op["security"] = []
    schemas: dict[str, Json] = {
        "ErrorEnvelope": error_envelope_schema(),
        "ImageRequest": image_request_schema(config, catalogue),
        "ImageResponse": image_response_schema(),
        "Model": model_schema(),
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
                           "description": "server.token; needed for writes under /api/ and everything under /v1/ "
                                          "when a token is configured"},
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
    document = build_document(bridge.config, bridge.catalogue)
    app[DOCUMENT_KEY] = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    app.router.add_get(OPENAPI_PATH, openapi_json)
