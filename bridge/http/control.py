"""``/api/info``, ``/api/comfyui/*`` (status from memory, switchover, pin, cancel) and
``/api/mqtt/discovery``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import errors
from ..errors import ApiError, ErrorCode
from .server import BRIDGE_KEY, Access, commands_of, json_response, read_json, route_policy


@route_policy(Access.OPEN)  # no secrets in it: the Home Assistant config flow reads it first
async def info(request: web.Request) -> web.Response:
    return json_response(commands_of(request).info())


@route_policy(Access.OPEN)
async def status(request: web.Request) -> web.Response:
    """Always 200 and never waits on ComfyUI: the snapshot is kept fresh in the background."""
    return web.Response(body=request.app[BRIDGE_KEY].hub.status_json(), content_type="application/json")


async def _body(request: web.Request, code: ErrorCode, param: str) -> Any:
    """The JSON body; a malformed one is this route's own 422 (DESIGN §4: bad body -> invalid_mode/pin)."""
    try:
        return await read_json(request)
    except ApiError as err:
        if err.error is not errors.INVALID_JSON:
            raise
        raise ApiError(code, err.message, param=param) from None


async def switchover(request: web.Request) -> web.Response:
    body = await _body(request, errors.INVALID_MODE, "mode")
    code, answer = await commands_of(request).switchover(body, trigger="api")
    return json_response(answer, status=code)


async def pin(request: web.Request) -> web.Response:
    return json_response(await commands_of(request).pin(await _body(request, errors.INVALID_PIN, "pinned")))


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
