"""``stream: true`` on the image routes: Server-Sent Events as OpenAI sends them.

``event: image_generation.partial_image`` (or ``image_edit.``) per partial image as ComfyUI's
previews arrive, then one ``.completed`` event per image; each ``data:`` is one JSON object whose
``type`` repeats the event name (the ``openai`` client picks the event model by ``type``).

The response starts with the first event, not before: anything that fails earlier (the GPU switch,
ComfyUI refusing the graph, a render that fails before its first preview) is still a plain HTTP error
in the usual envelope, which the ``openai`` client raises as its typed error. A failure after the
stream started is ``event: error`` with ``data: {"error": {...}}`` (the envelope), which the client
raises as ``APIError``. A client that goes away cancels the render (ComfyUI's prompt is taken back).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import ApiError
from ..images.answers import Rendered, StreamKind, partial_event
from ..images.partials import Partial, PartialSink

_LOGGER = logging.getLogger(__name__)
Render = Callable[[PartialSink], Coroutine[Any, Any, Rendered]]


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    return response


async def stream_images(request: web.Request, kind: StreamKind, size: str, render: Render) -> web.StreamResponse:
    """Run ``render`` (which feeds partial images to its sink) and stream what it produces."""
    partials: asyncio.Queue[Partial] = asyncio.Queue()
    task = asyncio.create_task(render(partials.put_nowait), name=f"{kind}-stream")
    response: web.StreamResponse | None = None
    created = int(time.time())
    try:
        while True:
            getter = asyncio.ensure_future(partials.get())
            await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            response = response or await _open(request)
            event = partial_event(kind, getter.result(), created=created, size=size)
            await response.write(sse(event["type"], event))
        while not partials.empty():  # partials that came in just before the end go first
            response = response or await _open(request)
            event = partial_event(kind, partials.get_nowait(), created=created, size=size)
            await response.write(sse(event["type"], event))
        try:
            rendered = task.result()
        except ApiError as err:
            if response is None:
                raise  # nothing sent yet: the plain error answer (status, envelope, Retry-After)
            await response.write(sse("error", err.envelope()))
            return response
        except Exception:
            if response is None:
                raise
            _LOGGER.exception("image stream failed after it started")
            await response.write(sse("error", ApiError(errors.INTERNAL, "internal error; see the bridge log").envelope()))
            return response
        response = response or await _open(request)
        for event in rendered.completed_events(kind):
            await response.write(sse(event["type"], event))
        await response.write_eof()
        return response
    finally:
        if not task.done():
            task.cancel()  # the client went away, or the handler was cancelled: take the render back
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
