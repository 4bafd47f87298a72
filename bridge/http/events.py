"""``GET /api/events``: the status snapshot and events as Server-Sent Events.

``event: status`` carries the whole snapshot (on connect and on every change; a slow reader only gets
the newest one), other ``event:`` names carry events (``switch_started``, ``image_generated``, ...).
A ``: ping`` comment every ``server.sse_ping_interval`` seconds keeps proxies and clients honest.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..encoding import json_bytes
from ..status import Message, StatusHub
from .server import Access, route_policy

HUB_KEY = web.AppKey("hub", StatusHub)
PING_KEY = web.AppKey("sse_ping_interval", float)


def encode(message: Message) -> bytes:
    name = "status" if message.kind == "status" else message.data["type"]
    return b"event: " + name.encode() + b"\ndata: " + json_bytes(message.data) + b"\n\n"


@route_policy(Access.TOKEN_QUERY)  # a browser EventSource cannot send headers: ?token= works too
async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
        }
    )
    await response.prepare(request)
    ping = request.app[PING_KEY]
    with request.app[HUB_KEY].subscribe(reader="sse") as feed:
        try:
            while True:
                try:
                    message = await asyncio.wait_for(feed.get(), timeout=ping)
                except TimeoutError:
                    await response.write(b": ping\n\n")
                    continue
                await response.write(encode(message))
        except (ConnectionResetError, ConnectionError):
            pass  # the client went away
    return response


def setup(app: web.Application, hub: StatusHub, ping_interval: float) -> None:
    app[HUB_KEY] = hub
    app[PING_KEY] = ping_interval
    app.router.add_get("/api/events", events)
