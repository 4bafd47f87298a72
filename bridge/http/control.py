"""``/api/info``, ``/api/comfyui/*`` (status from memory, switchover, pin, cancel) and
``/api/mqtt/discovery``."""

from __future__ import annotations

from aiohttp import web

from .server import BRIDGE_KEY, commands_of, json_response, read_json


async def info(request: web.Request) -> web.Response:
    return json_response(commands_of(request).info())


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


async def mqtt_discovery(request: web.Request) -> web.Response:
    return json_response(await commands_of(request).mqtt_discovery(await read_json(request)))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/info", info)
    app.router.add_get("/api/comfyui/status", status)
    app.router.add_post("/api/comfyui/switchover", switchover)
    app.router.add_post("/api/comfyui/pin", pin)
    app.router.add_post("/api/comfyui/cancel", cancel)
    app.router.add_post("/api/mqtt/discovery", mqtt_discovery)
