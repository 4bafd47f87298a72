"""The LLM routes of the OpenAI surface: ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``.

Parse and answer only: the body is read (bounded by ``llm.max_body_bytes``, larger than the API's own
limit because chat histories and embedding batches are big), parsed into an :class:`LlmCall`, and handed
to the LLM service, which routes, admits and sends it (``bridge/llm/service.py``). What comes back is
written as it came: a whole answer in one response, a stream chunk by chunk, each chunk written the
moment it arrives. A client that hangs up cancels this handler (``handler_cancellation``), and with it
the upstream request.
"""

from __future__ import annotations

from aiohttp import web

from ..llm.call import ENDPOINTS, parse
from ..llm.service import LlmService
from .server import BRIDGE_KEY, body_too_large


def llm_of(request: web.Request) -> LlmService:
    """The running bridge's LLM service (built at start-up, after the app was frozen)."""
    service: LlmService = request.app[BRIDGE_KEY].llm
    return service


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (413 ``request.body_too_large`` beyond it)."""
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def forward(request: web.Request) -> web.StreamResponse:
    service = llm_of(request)
    call = parse(request.path, await read_body(request, service.max_body_bytes), request.headers.get("X-Request-Id"))
    async with service.open(call, request.headers) as reply:
        if reply.chunks is None:
            return web.Response(status=reply.status, body=reply.body, headers=reply.headers)
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        async for chunk in reply.chunks:
            await response.write(chunk)
        await response.write_eof()
        return response


def setup(app: web.Application) -> None:
    for endpoint in ENDPOINTS:
        app.router.add_post(endpoint, forward)
