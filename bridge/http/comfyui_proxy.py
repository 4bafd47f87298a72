"""``/comfyui/``: ComfyUI's own web UI and API behind the bridge, so direct ComfyUI use is GPU-gated too.

Everything passes through as sent (HTTP both ways, streamed, and the ``/ws`` websocket), with two
exceptions:

* ``POST /comfyui/prompt`` (and ``/comfyui/api/prompt``, the form the frontend uses) first makes sure
  the GPU is in generation mode, waiting like an image request, and counts as image activity — so a
  prompt queued from the UI never renders while LLMs hold the GPU. Websockets never switch (opening
  the UI is not image work; llama-swap's users were bitten by exactly that).
* ComfyUI refuses a request whose ``Origin`` names another host than its loopback ``Host`` (``server.py``
  ``create_origin_only_middleware``; newer versions also refuse ``Sec-Fetch-Site: cross-site``). The
  browser's Origin is the bridge's, and the bridge has already decided whether to trust it, so the proxy
  presents ComfyUI with its own origin and drops ``Sec-Fetch-Site``. The bridge's bearer token and
  session cookie are not passed on.

With ``server.token`` set the proxy needs it (ComfyUI's reads show history, images and models): a
browser opens ``/comfyui/?token=<token>`` once and keeps a session cookie (``Access.BROWSER`` in
:mod:`.server`); scripts send the bearer header.

The frontend works under a path prefix because its index page loads ``./assets/...`` and derives its
API base from the page's path (``/comfyui`` → ``/comfyui/api/...``, ``/comfyui/ws``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from .. import errors
from ..errors import ApiError
from .server import ANY_MEDIA, BRIDGE_KEY, SESSION_COOKIE, Access, route_policy

_LOGGER = logging.getLogger(__name__)
PREFIX = "/comfyui"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# ComfyUI's prompt submission (every route is also served under /api: server.py add_routes)
PROMPT_PATHS = frozenset({"prompt", "api/prompt"})
SESSION_KEY = web.AppKey("comfyui_proxy_session", aiohttp.ClientSession)
# RFC 9110 7.6.1 hop-by-hop headers, and what aiohttp sets for the upstream request itself
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
     "trailer", "transfer-encoding", "upgrade"}
)  # fmt: skip
NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization", "origin", "sec-fetch-site"}
WS_NOT_FORWARDED = NOT_FORWARDED | {
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-accept",
    "sec-websocket-protocol", "content-length",
}  # fmt: skip
WS_MAX_MESSAGE = 128 * 1024 * 1024  # ComfyUI's own limit for what it sends (SaveImageWebsocket PNGs)


def upstream_origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _forward_headers(request: web.Request, drop: frozenset[str], origin: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(
        (name, value) for name, value in request.headers.items() if name.lower() not in drop | {"cookie"}
    )
    if "Origin" in request.headers:
        headers["Origin"] = origin  # same-origin as far as ComfyUI's origin check is concerned
    cookies = "; ".join(f"{name}={value}" for name, value in request.cookies.items() if name != SESSION_COOKIE)
    if cookies:
        headers["Cookie"] = cookies
    return headers


def _target(request: web.Request) -> tuple[str, str]:
    bridge = request.app[BRIDGE_KEY]
    base: str = bridge.config.comfyui.url
    path = request.match_info["path"]
    query = f"?{request.query_string}" if request.query_string else ""
    return base, f"{base}/{path}{query}"


def _unreachable(err: BaseException) -> ApiError:
    return ApiError(errors.ENGINE_UNAVAILABLE, f"ComfyUI is not reachable: {type(err).__name__}: {err}")


@route_policy(Access.BROWSER, accepts=ANY_MEDIA)
async def redirect_to_slash(request: web.Request) -> web.StreamResponse:
    """The UI's relative asset paths need the trailing slash."""
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPPermanentRedirect(f"{PREFIX}/{query}")


@route_policy(Access.BROWSER, accepts=ANY_MEDIA)
async def proxy(request: web.Request) -> web.StreamResponse:
    if request.method == "GET" and request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request)
    bridge = request.app[BRIDGE_KEY]
    if request.method == "POST" and request.match_info["path"] in PROMPT_PATHS:
        await bridge.gate.ensure_generation("comfyui")
        async with bridge.gate.image_activity():
            return await _http(request)
    return await _http(request)


async def _http(request: web.Request) -> web.StreamResponse:
    base, url = _target(request)
    session = request.app[SESSION_KEY]
    headers = _forward_headers(request, NOT_FORWARDED, upstream_origin(base))
    body = request.content if request.body_exists else None
    response: web.StreamResponse | None = None
    try:
        async with session.request(request.method, url, headers=headers, data=body, allow_redirects=False) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, TimeoutError, OSError) as err:
        if response is None or not response.prepared:
            raise _unreachable(err) from None
        # cut off mid-body (either side): end the connection so the client sees it was cut short
        _LOGGER.debug("ComfyUI proxy %s %s cut off: %s", request.method, request.path, err)
        if request.transport is not None:
            request.transport.close()
        return response


async def _websocket(request: web.Request) -> web.StreamResponse:
    base, url = _target(request)
    session = request.app[SESSION_KEY]
    headers = _forward_headers(request, WS_NOT_FORWARDED, upstream_origin(base))
    protocols = tuple(p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip())
    try:
        upstream = await session.ws_connect(
            url.replace("http", "ws", 1), headers=headers, protocols=protocols, max_msg_size=WS_MAX_MESSAGE
        )
    except aiohttp.WSServerHandshakeError as err:
        return web.Response(status=err.status, text=err.message or "ComfyUI refused the websocket")
    except (aiohttp.ClientConnectionError, TimeoutError, OSError) as err:
        raise _unreachable(err) from None
    client = web.WebSocketResponse(protocols=(upstream.protocol,) if upstream.protocol else ())
    try:
        await client.prepare(request)
        pumps = [
            asyncio.create_task(_pump(upstream, client), name="comfyui-ws-down"),
            asyncio.create_task(_pump(client, upstream), name="comfyui-ws-up"),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
    finally:
        await upstream.close()
        await client.close()
    return client


async def _pump(
    source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
    sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
) -> None:
    """Copy messages one way until either side closes."""
    async for msg in source:
        if msg.type == WSMsgType.TEXT:
            await sink.send_str(msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sink.send_bytes(msg.data)
        else:  # CLOSE, CLOSING, CLOSED, ERROR (pings are answered by each side itself)
            break


def setup(app: web.Application) -> None:
    async def session(app: web.Application) -> AsyncIterator[None]:
        # its own session: bodies pass through as sent (no decompression), no total timeout (streams)
        app[SESSION_KEY] = aiohttp.ClientSession(auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None))
        yield
        with contextlib.suppress(Exception):
            await app[SESSION_KEY].close()

    app.cleanup_ctx.append(session)
    app.router.add_route("GET", PREFIX, redirect_to_slash)
    for method in METHODS:
        app.router.add_route(method, PREFIX + "/{path:.*}", proxy)
