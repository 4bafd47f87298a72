"""The OpenAI-compatible surface: ``POST /v1/images/generations`` and ``GET /v1/models``.

``/v1/models`` lists both kinds, each marked with ``kind``: the LLM slots' models first (what chat
clients pick from), then the curated image models. The LLM routes are in ``http/llm.py``.
"""

from __future__ import annotations

from aiohttp import web

from .server import BRIDGE_KEY, commands_of, json_response, read_json


async def images_generations(request: web.Request) -> web.Response:
    return json_response(await commands_of(request).generate(await read_json(request)))


async def models(request: web.Request) -> web.Response:
    llm = request.app[BRIDGE_KEY].llm
    return json_response({"object": "list", "data": [*llm.models(), *commands_of(request).models()]})


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/images/generations", images_generations)
    app.router.add_get("/v1/models", models)
