"""``/api/info`` and ``/api/comfyui/*``: status from memory, switchover, pin, cancel."""

from __future__ import annotations

from aiohttp import web

from .server import BRIDGE_KEY, Access, commands_of, json_response, read_json, route_policy


@route_policy(Access.OPEN)  # no secrets in it: the Home Assistant config flow reads it first
async def info(request: web.Request) -> web.Response:
    return json_response(commands_of(request).info())


@route_policy(Access.OPEN)
async def status(request: web.Request) -> web.Response:
    """Always 200 and never waits on ComfyUI: the snapshot is kept fresh in the background."""
    return web.Response(body=request.app[BRIDGE_KEY].hub.status_json(), content_type="application/json")


async def switchover(request: web.Request) -> web.Response:
    code, body = await commands_of(request).switchover(await read_json(request), trigger="api")
    return json_response(body, status=code)


async def pin(request: web.Request) -> web.Response:
    return json_response(await commands_of(request).pin(await read_json(request)))


async def cancel(request: web.Request) -> web.Response:
    return json_response(await commands_of(request).cancel())


def setup(app: web.Application) -> None:
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/comfyui/status", status)
    app.router.add_post("/api/comfyui/switchover", switchover)
    app.router.add_post("/api/comfyui/pin", pin)
    app.router.add_post("/api/comfyui/cancel", cancel)
