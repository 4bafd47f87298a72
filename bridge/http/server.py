"""HTTP plumbing shared by every route: the error envelope, the trust model, JSON bodies.

Routes raise :class:`ApiError`; :func:`error_middleware` is the one place that renders it, and it
also turns aiohttp's own 404/405/413 into the same envelope, so no client ever sees an HTML page or
a bare 500 for bad input.

The trust model (docs/security.md) runs as three middlewares, in this order, for every request:
:func:`origin_middleware` (foreign browser pages: 403, CORS for ``server.allowed_origins``),
:func:`auth_middleware` (the token, signed URLs, ``?token=`` for event streams: 401/403) and
:func:`media_type_middleware` (bodies in a media type the route does not accept: 415). What a route
requires is declared once, next to its handler, with :func:`route_policy`; a route that declares
nothing needs the token and takes only ``application/json`` bodies, so a new route is safe by default.
"""

from __future__ import annotations

import enum
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from .. import errors
from ..config import ServerConfig
from ..encoding import json_bytes
from ..errors import ApiError
from ..signing import EXP_PARAM, SIG_PARAM, UrlSigner
from ..signing import Verdict as Signature
from .origins import OriginRule, Verdict

if TYPE_CHECKING:
    from ..commands import Commands

_LOGGER = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Callable[..., Any])
SERVER_KEY = web.AppKey("server_config", ServerConfig)
ORIGIN_RULE_KEY = web.AppKey("origin_rule", OriginRule)
BRIDGE_KEY: web.AppKey[Any] = web.AppKey("bridge")  # hal0_bridge.app.Bridge; typed loosely to avoid an import cycle
CORS_ORIGIN = "hal0_cors_origin"  # request key: the allowed foreign origin to answer with CORS headers
JSON = "application/json"
MULTIPART = "multipart/form-data"
ANY_MEDIA = ("*/*",)  # a route that passes bodies on as sent (the /comfyui/ proxy)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_PARAM = "token"
SESSION_COOKIE = "hal0_session"
SESSION_MAX_AGE = 30 * 24 * 3600  # seconds a browser keeps its session cookie
SESSION_PATH = "/comfyui"  # the only routes that take it (Access.BROWSER)
CORS_METHODS = "GET, HEAD, POST"
CORS_HEADERS = "Authorization, Content-Type"
CORS_MAX_AGE = "600"


# ------------------------------------------------------------------------------- route policies


class Access(enum.Enum):
    """What a route needs when ``server.token`` is set (without a token, loopback-only is the rule)."""

    OPEN = "open"  # nothing: status, info, /metrics, the page's static files
    TOKEN = "token"  # Authorization: Bearer <token>
    SIGNED = "signed"  # the token, or a signed URL the bridge handed out (?exp=&sig=): <img src>
    TOKEN_QUERY = "token_query"  # the token in the header or as ?token= (EventSource sends no headers)
    # the token in the header, or a browser's session cookie, which opening the URL once with ?token=
    # sets: ComfyUI's own UI behind /comfyui/, whose pages, scripts and websocket send no headers of ours
    BROWSER = "browser"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    access: Access = Access.TOKEN
    accepts: tuple[str, ...] = (JSON,)  # media types of a request body (POST and friends)


DEFAULT_POLICY = RoutePolicy()
_POLICY_ATTR = "__hal0_route_policy__"


def route_policy(access: Access = Access.TOKEN, accepts: tuple[str, ...] = (JSON,)) -> Callable[[H], H]:
    """Declare what a route requires, on its handler: ``@route_policy(Access.OPEN)``,
    ``@route_policy(accepts=(MULTIPART,))``, ``accepts=ANY_MEDIA`` for any body.
    Undecorated handlers get :data:`DEFAULT_POLICY`."""
    policy = RoutePolicy(access, tuple(media.lower() for media in accepts))

    def mark(handler: H) -> H:
        setattr(handler, _POLICY_ATTR, policy)
        return handler

    return mark


def policy_of(handler: Any) -> RoutePolicy:
    policy = getattr(handler, _POLICY_ATTR, None)
    return policy if isinstance(policy, RoutePolicy) else DEFAULT_POLICY


def route_policies(app: web.Application) -> dict[tuple[str, str], RoutePolicy]:
    """(method, path template) -> policy for every route (HEAD twins of GET left out); OpenAPI reads it."""
    return {
        (route.method, route.resource.canonical): policy_of(route.handler)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


# ------------------------------------------------------------------------------- answers


def commands_of(request: web.Request) -> Commands:
    """The running bridge's dispatcher (built at start-up, after the app was frozen)."""
    commands: Commands = request.app[BRIDGE_KEY].commands
    return commands


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Always encodable: echoed user text may hold lone surrogates (see :mod:`hal0_bridge.encoding`)."""
    return web.Response(body=json_bytes(data), status=status, content_type="application/json", headers=headers)


def error_response(err: ApiError) -> web.Response:
    return json_response(err.envelope(), status=err.status, headers=err.headers())


def body_too_large(limit: int) -> ApiError:
    return ApiError(errors.BODY_TOO_LARGE, f"request body is larger than {limit} bytes", details={"max_bytes": limit})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err)
    except web.HTTPRequestEntityTooLarge:
        return error_response(body_too_large(request.app[SERVER_KEY].max_body_bytes))
    except web.HTTPNotFound:
        return error_response(ApiError(errors.NOT_FOUND, f"no route for {request.path}"))
    except web.HTTPMethodNotAllowed as exc:
        allowed = sorted(exc.allowed_methods)
        response = error_response(
            ApiError(
                errors.METHOD_NOT_ALLOWED,
                f"{request.method} is not allowed on {request.path}",
                details={"allowed": allowed},
            )
        )
        response.headers["Allow"] = ", ".join(allowed)  # RFC 9110: a 405 names what is allowed
        return response
    except web.HTTPException:
        raise
    except Exception:
        # A bug, not bad input: log it whole, answer in the envelope, keep serving.
        _LOGGER.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(ApiError(errors.INTERNAL, "internal error; see the bridge log"))


# ------------------------------------------------------------------------------- the trust model


def _routed(request: web.Request) -> bool:
    """False for requests no route serves (404/405): they get that answer, whatever else is wrong."""
    return request.match_info.http_exception is None


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse foreign browser pages (and DNS rebinding without a token); CORS for allowed origins."""
    rule = request.app[ORIGIN_RULE_KEY]
    host = request.headers.get("Host")
    if not rule.host_ok(host):
        raise ApiError(
            errors.FORBIDDEN_ORIGIN,
            "the Host header names no address of this bridge (DNS rebinding guard); set server.public_url "
            "or server.allowed_origins for the name you use",
            details={"host": host},
        )
    origin = request.headers.get("Origin")
    verdict = rule.judge(origin, host, request.method, request.headers.get("Sec-Fetch-Site"))
    if verdict is Verdict.FORBIDDEN:
        raise ApiError(
            errors.FORBIDDEN_ORIGIN,
            "requests from this web page are refused; add its origin to server.allowed_origins to allow it",
            details={"origin": origin},
        )
    if verdict is Verdict.ALLOWED:
        request[CORS_ORIGIN] = origin
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            return web.Response(
                status=204,
                headers={
                    "Access-Control-Allow-Methods": CORS_METHODS,
                    "Access-Control-Allow-Headers": CORS_HEADERS,
                    "Access-Control-Max-Age": CORS_MAX_AGE,
                },
            )
    return await handler(request)


async def add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer to an allowed origin (errors, SSE, images) is readable there."""
    origin = request.get(CORS_ORIGIN)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        response.headers.add("Vary", "Origin")


def _bearer_ok(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _query_token_ok(request: web.Request, token: str) -> bool:
    given = request.query.get(TOKEN_PARAM)
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def session_value(token: str) -> str:
    """The browser session cookie's value: derived from the token, so the token itself is never stored
    in a cookie, and a new token ends every session."""
    return hmac.new(token.encode(), b"hal0-bridge browser session v1", "sha256").hexdigest()


def _session_ok(request: web.Request, token: str) -> bool:
    given = request.cookies.get(SESSION_COOKIE)
    return given is not None and hmac.compare_digest(given.encode("utf-8", "replace"), session_value(token).encode())


def _start_session(request: web.Request, token: str) -> web.Response:
    """``GET ...?token=<token>`` on a browser route: 303 to the same URL without the token, with the
    session cookie for ``/comfyui`` only. HttpOnly; SameSite=Lax: a link from another site (the Home
    Assistant dashboard) opens the UI, while no other site's page can send it with a POST or a fetch
    (and the Origin rule refuses foreign pages anyway)."""
    location = request.rel_url.without_query_params(TOKEN_PARAM)
    response = web.Response(status=303, headers={"Location": str(location), "Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE, session_value(token), max_age=SESSION_MAX_AGE, path=SESSION_PATH, httponly=True,
        samesite="Lax", secure=request.secure,
    )  # fmt: skip
    return response


def _check_signature(request: web.Request) -> bool:
    """True for a valid signed URL, False when none was given; raises for a tampered or expired one."""
    exp, sig = request.query.get(EXP_PARAM), request.query.get(SIG_PARAM)
    if exp is None and sig is None:
        return False
    # made at start-up when server.token is set (the key file is read off the loop)
    signer: UrlSigner | None = getattr(request.app.get(BRIDGE_KEY), "signer", None)
    verdict = Signature.INVALID if signer is None else signer.verify(request.path, exp, sig)
    if verdict is Signature.EXPIRED:
        raise ApiError(errors.SIGNATURE_EXPIRED, "this signed URL has expired; ask for the image again or send the token")
    if verdict is Signature.INVALID:
        raise ApiError(errors.SIGNATURE_INVALID, "the URL's signature does not match (altered, or signed by another install)")
    return True


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[SERVER_KEY].token
    if token and _routed(request):
        access = policy_of(request.match_info.handler).access
        if access is not Access.OPEN and not _bearer_ok(request, token):
            if access is Access.SIGNED and _check_signature(request):
                pass
            elif access is Access.TOKEN_QUERY and _query_token_ok(request, token):
                pass
            elif access is Access.BROWSER and _session_ok(request, token):
                pass
            elif access is Access.BROWSER and request.method == "GET" and _query_token_ok(request, token):
                return _start_session(request, token)
            elif access is Access.BROWSER:
                raise ApiError(
                    errors.UNAUTHORIZED,
                    f"open {request.path}?token=<server.token> once in this browser (it then keeps a session "
                    "cookie), or send Authorization: Bearer <token>",
                )
            else:
                raise ApiError(errors.UNAUTHORIZED, "missing or wrong bearer token (Authorization: Bearer <token>)")
    return await handler(request)


def media_type(request: web.Request) -> str | None:
    header = request.headers.get("Content-Type")
    return header.split(";", 1)[0].strip().lower() if header is not None else None


@web.middleware
async def media_type_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body must be in a media type the route accepts: a ``text/plain`` form post needs no CORS
    preflight, so without this any page could send one. An empty body passes whatever its type says
    (clients label it ``application/octet-stream``; there is nothing to read), and a route that needs a
    body refuses it itself. Foreign pages are refused before this, by the Origin rule."""
    if request.method in BODY_METHODS and _routed(request) and request.body_exists:
        accepts = policy_of(request.match_info.handler).accepts
        given = media_type(request)
        if accepts != ANY_MEDIA and given not in accepts:
            raise ApiError(
                errors.UNSUPPORTED_MEDIA_TYPE,
                f"send the body as {' or '.join(accepts)} (Content-Type header)",
                details={"content_type": given, "accepted": list(accepts)},
            )
    return await handler(request)


# ------------------------------------------------------------------------------- bodies


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
    except ValueError:  # Python's int limit: an integer of more than 4300 digits
        raise ApiError(errors.INVALID_JSON, "request body holds an integer with too many digits") from None


def make_app(server: ServerConfig) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, origin_middleware, auth_middleware, media_type_middleware],
        client_max_size=server.max_body_bytes,
    )
    app[SERVER_KEY] = server
    app[ORIGIN_RULE_KEY] = OriginRule.from_config(server)
    app.on_response_prepare.append(add_cors_headers)
    return app
