"""The OpenAI-compatible surface: ``POST /v1/images/generations``, ``POST /v1/images/edits``, ``GET /v1/models``.

Both image routes answer JSON, or Server-Sent Events with ``stream: true`` (:mod:`.image_stream`).
``/v1/models`` lists both kinds, each marked with ``kind``: the LLM slots' models first (what chat
clients pick from), then the curated image models. The LLM routes are in ``http/llm.py``.
"""

from __future__ import annotations

from aiohttp import web

from ..commands import Commands
from ..images.answers import StreamKind
from ..images.request import ImageRequest
from .image_stream import stream_images
from .multipart import read_form
from .server import BRIDGE_KEY, MULTIPART, commands_of, json_response, read_json, route_policy


async def _answer(request: web.Request, commands: Commands, image: ImageRequest, kind: StreamKind) -> web.StreamResponse:
    if image.stream:
        size = f"{image.width}x{image.height}"
        return await stream_images(request, kind, size, lambda sink: commands.render_image(image, sink))
    rendered = await commands.render_image(image)
    return json_response(rendered.answer(image.response_format))


async def images_generations(request: web.Request) -> web.StreamResponse:
    commands = commands_of(request)
    image = commands.image_request(await read_json(request))
    return await _answer(request, commands, image, "image_generation")


@route_policy(accepts=(MULTIPART,))
async def images_edits(request: web.Request) -> web.StreamResponse:
    commands = commands_of(request)
    form = await read_form(request, max_file_bytes=request.app[BRIDGE_KEY].config.image.max_upload_bytes)
    image = await commands.edit_request(form.fields, dict(form.files))
    return await _answer(request, commands, image, "image_edit")


async def models(request: web.Request) -> web.Response:
    llm = request.app[BRIDGE_KEY].llm
    return json_response({"object": "list", "data": [*llm.models(), *commands_of(request).models()]})


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/images/generations", images_generations)
    app.router.add_post("/v1/images/edits", images_edits)
    app.router.add_get("/v1/models", models)
