"""The integration's client on the wire: SSE framing and odd answers a proxy or an older bridge may
give. The servers here are hand-written HTTP peers (not our code), so the parser meets real bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from custom_components.hal0.api import Hal0ApiError, Hal0Client, Hal0ConnectionError, Status

from .conftest import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve(socket_enabled: None) -> AsyncIterator[Callable[[str, str, Handler], Awaitable[Hal0Client]]]:
    """Serve one handler on a loopback port; returns a client pointed at it."""
    runners: list[web.AppRunner] = []
    session = aiohttp.ClientSession()

    async def _serve(method: str, path: str, handler: Handler) -> Hal0Client:
        app = web.Application()
        app.router.add_route(method, path, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return Hal0Client(session, "127.0.0.1", port, "tok")

    yield _serve
    await session.close()
    for runner in runners:
        await runner.cleanup()


def sse(body: bytes) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(body)
        return resp

    return handler


async def _collect(client: Hal0Client) -> list[tuple[str, dict]]:
    return [(e.event, e.data) async for e in client.events()]


async def test_sse_joins_multi_line_data_and_skips_comments(serve) -> None:
    client = await serve(
        "GET", "/api/events", sse(b': ping\n\nevent: status\ndata: {"mode":\ndata: "generation"}\n\n: ping\n\n')
    )

    assert await _collect(client) == [("status", {"mode": "generation"})]


async def test_sse_accepts_crlf_and_no_space_after_colon(serve) -> None:
    client = await serve("GET", "/api/events", sse(b'event:image_generated\r\ndata:{"urls":["/a.png"]}\r\n\r\n'))

    assert await _collect(client) == [("image_generated", {"urls": ["/a.png"]})]


async def test_sse_drops_events_whose_data_is_not_a_json_object(serve) -> None:
    client = await serve(
        "GET", "/api/events", sse(b"event: status\ndata: not json\n\nevent: status\ndata: [1]\n\ndata: {}\n\n")
    )

    assert await _collect(client) == [("message", {})]


async def test_sse_refused_by_the_server_is_a_connection_error(serve) -> None:
    async def gone(_request: web.Request) -> web.Response:
        return web.Response(status=404)

    client = await serve("GET", "/api/events", gone)

    with pytest.raises(Hal0ConnectionError):
        await _collect(client)


async def test_non_json_success_answer_is_a_connection_error(serve) -> None:
    async def html(_request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy login</html>", content_type="text/html")

    client = await serve("GET", "/api/comfyui/status", html)

    with pytest.raises(Hal0ConnectionError):
        await client.status()


async def test_error_without_envelope_keeps_status_and_text(serve) -> None:
    async def teapot(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="Bad Gateway")

    client = await serve("POST", "/api/comfyui/cancel", teapot)

    with pytest.raises(Hal0ApiError) as err:
        await client.cancel()

    assert (err.value.status, err.value.code, err.value.message) == (502, "http.502", "Bad Gateway")


async def test_image_fetch_of_a_missing_file_is_an_api_error(serve) -> None:
    async def missing(_request: web.Request) -> web.Response:
        return web.Response(status=404)

    client = await serve("GET", "/api/images/cache/{name}", missing)

    with pytest.raises(Hal0ApiError):
        await client.fetch_image("/api/images/cache/x.png")


def test_status_parsing_falls_back_to_safe_defaults_for_garbage() -> None:
    status = Status.from_dict(
        {"mode": "generation", "reachable": "yes", "memory": [], "queue": {"running": True}, "progress": {"step": 1},
         "slots": ["x", {"name": "llm", "group": "llm", "state": "ready"}], "idle_restore_at": "soon"}
    )  # fmt: skip

    assert status.mode == "generation"
    assert status.reachable is False
    assert status.memory.gtt_used is None
    assert status.queue_running == 0
    assert status.progress is None
    assert [s.name for s in status.slots] == ["llm"]
    assert status.idle_restore_at is None


def test_status_parsing_reads_the_llm_counts_and_ignores_garbage_there() -> None:
    status = Status.from_dict({"llm": {"in_flight": 2, "queued": 5, "models": ["tiny"]}})
    assert (status.llm_in_flight, status.llm_queued) == (2, 5)
    for garbage in ({"llm": "busy"}, {"llm": {"in_flight": "2", "queued": True}}, {}):
        parsed = Status.from_dict(garbage)
        assert (parsed.llm_in_flight, parsed.llm_queued) == (0, 0)


def test_progress_percent_is_step_of_steps() -> None:
    status = Status.from_dict({"progress": {"prompt_id": "p", "step": 3, "steps": 4}})

    assert status.progress is not None
    assert status.progress.percent == 75.0


def test_progress_with_zero_steps_is_zero_percent() -> None:
    status = Status.from_dict({"progress": {"prompt_id": "p", "step": 0, "steps": 0}})

    assert status.progress is not None
    assert status.progress.percent == 0.0
