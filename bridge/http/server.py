"""HTTP plumbing shared by every route: the error envelope, bearer auth, JSON bodies.

Routes raise :class:`ApiError`; :func:`error_middleware` is the one place that renders it, and it
also turns aiohttp's own 404/405/413 into the same envelope, so no client ever sees an HTML page or
a bare 500 for bad input.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .. import errors
from ..errors import ApiError

if TYPE_CHECKING:
    from ..commands import Commands

_LOGGER = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_KEY = web.AppKey("token", str)
MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
BRIDGE_KEY: web.AppKey[Any] = web.AppKey("bridge")  # hal0_bridge.app.Bridge; typed loosely to avoid an import cycle
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON = "application/json"
MULTIPART = "multipart/form-data"
# The one table of request bodies that are not JSON: every other POST takes application/json.
# A path, or a prefix ending in "/", -> the media types it takes; None = anything, passed on as sent.
BODY_MEDIA_TYPES: dict[str, tuple[str, ...] | None] = {
    "/v1/images/edits": (MULTIPART,),
    "/comfyui/": None,  # ComfyUI's own API (JSON, its uploads' multipart), proxied untouched
}


def body_media_types(path: str) -> tuple[str, ...] | None:
    """What a POST to ``path`` may send (None: any media type)."""
    if path in BODY_MEDIA_TYPES:
        return BODY_MEDIA_TYPES[path]
    for prefix, types in BODY_MEDIA_TYPES.items():
        if prefix.endswith("/") and path.startswith(prefix):
            return types
    return (JSON,)


def commands_of(request: web.Request) -> Commands:
    """The running bridge's dispatcher (built at start-up, after the app was frozen)."""
    commands: Commands = request.app[BRIDGE_KEY].commands
    return commands


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(err: ApiError) -> web.Response:
    return json_response(err.envelope(), status=err.status, headers=err.headers())


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            ApiError(
                errors.BODY_TOO_LARGE,
                f"request body is larger than {request.app[MAX_BODY_KEY]} bytes",
                details={"max_bytes": request.app[MAX_BODY_KEY]},
            )
        )
    except web.HTTPNotFound:
        return error_response(ApiError(errors.NOT_FOUND, f"no route for {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        return error_response(
            ApiError(
                errors.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {request.path}",
                details={"allowed": sorted(exc.allowed_methods)},
            )
        )
    except web.HTTPException:
        raise
    except Exception:
        # A bug, not bad input: log it whole, answer in the envelope, keep serving.
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError(errors.INTERNAL, "internal error; see the bridge log"))


def path_requires_token(method: str, path: str) -> bool:
    """Write routes, everything under /v1 and ComfyUI behind /comfyui (its reads show history, images
    and models) need the bearer token when one is configured."""
    return (
        path.startswith("/v1/")
        or path == "/comfyui"
        or path.startswith("/comfyui/")
        or (method not in READ_METHODS and path.startswith("/api/"))
    )


def requires_token(request: web.Request) -> bool:
    return path_requires_token(request.method, request.path)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[TOKEN_KEY]
    if token and requires_token(request):
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(errors.UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer <token>)")
    return await handler(request)


async def read_json(request: web.Request) -> Any:
    """The body as JSON; an empty or malformed body is 400 ``request.invalid_json``."""
    raw = await request.read()  # bounded by the app's client_max_size -> 413
    if not raw.strip():
        raise ApiError(errors.INVALID_JSON, "request body is empty; expected JSON")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(errors.INVALID_JSON, f"request body is not valid JSON: {err}") from None
    except RecursionError:
        raise ApiError(errors.INVALID_JSON, "request body is nested too deeply") from None


def make_app(token: str, max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware], client_max_size=max_body_bytes)
    app[TOKEN_KEY] = token
    app[MAX_BODY_KEY] = max_body_bytes
    return app
