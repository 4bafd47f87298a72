"""ComfyUIClient over real sockets: a server replaying recorded ComfyUI answers, plus the faults a
real network has (refused port, blackholed socket, a connection cut mid-response)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hal0_bridge.comfyui.client import ComfyUIClient, ImageRef, QueueInfo, Submitted
from hal0_bridge.comfyui.errors import ComfyRejected, ComfyServerError, ComfyUnreachable
from hal0_bridge.config import ComfyConfig, build

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
# a bound for calls that must fail on their own timeout; never reached unless the client hangs
HANG_GUARD = 30


def captured(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())


def comfy_cfg(url: str, **overrides: float) -> ComfyConfig:
    timeouts = {"connect_timeout": 0.5, "request_timeout": 0.5, "probe_timeout": 0.3, **overrides}
    return build({"comfyui": {"url": url, **timeouts}}).comfyui


class Recorder:
    """A tiny ComfyUI double: answers per (method, path) from a table, records what it got."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.answers: dict[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}

    def json(self, method: str, path: str, body: Any, status: int = 200) -> None:
        async def answer(_: web.Request) -> web.StreamResponse:
            return web.json_response(body, status=status)

        self.answers[(method, path)] = answer

    def raw(self, method: str, path: str, body: bytes, status: int = 200, content_type: str = "text/plain") -> None:
        async def answer(_: web.Request) -> web.StreamResponse:
            return web.Response(body=body, status=status, content_type=content_type)

        self.answers[(method, path)] = answer

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        self.requests.append((request.method, request.path_qs, body))
        answer = self.answers.get((request.method, request.path))
        if answer is None:
            return web.Response(status=404)
        return await answer(request)


@contextlib.asynccontextmanager
async def serve(recorder: Recorder) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(on_connect: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> AsyncIterator[str]:
    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def recorded(session: aiohttp.ClientSession) -> AsyncIterator[tuple[Recorder, ComfyUIClient]]:
    recorder = Recorder()
    async with serve(recorder) as url:
        yield recorder, ComfyUIClient(session, comfy_cfg(url), client_id="cafe")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- POST /prompt ------------------------------------------------------------------------------------


async def test_submit_returns_comfyuis_prompt_id_and_number(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.json("POST", "/prompt", captured("prompt_ok_while_busy.json")["response"])
    submitted = await client.submit({"1": {"class_type": "X", "inputs": {}}})
    assert submitted == Submitted("c22cce3c-1124-4e50-bf55-0e1eab6daeb5", 38)


async def test_submit_sends_graph_client_id_and_our_prompt_id(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.json("POST", "/prompt", {"prompt_id": "mine", "number": 1, "node_errors": {}})
    graph = captured("prompt_request_example.json")["prompt"]
    await client.submit(graph, prompt_id="mine")
    ((method, path, body),) = recorder.requests
    assert (method, path) == ("POST", "/prompt")
    assert body == {"prompt": graph, "client_id": "cafe", "prompt_id": "mine"}


async def test_submit_400_keeps_comfyuis_error_and_node_errors(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    body = captured("prompt_error_multiple_nodes.json")["response"]
    recorder.json("POST", "/prompt", body, status=400)
    with pytest.raises(ComfyRejected) as caught:
        await client.submit({})
    assert caught.value.error == body["error"]
    assert caught.value.node_errors == body["node_errors"]
    api = caught.value.to_api_error()
    assert (api.status, api.code) == (502, "image.upstream_failed")
    assert "Prompt outputs failed validation" in api.message
    assert "Value 100000 bigger than max of 16384" in api.message
    assert api.details["comfyui"]["node_errors"] == body["node_errors"]


async def test_submit_plain_text_500_keeps_the_text(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    text = captured("prompt_error_malformed_json.json")["response"]
    recorder.raw("POST", "/prompt", text.encode(), status=500)
    with pytest.raises(ComfyServerError) as caught:
        await client.submit({})
    assert (caught.value.status, caught.value.text) == (500, text)
    api = caught.value.to_api_error()
    assert (api.status, api.code) == (502, "image.upstream_failed")
    assert "Server got itself in trouble" in api.message
    assert api.details["comfyui"]["text"] == text


async def test_submit_200_without_prompt_id_is_a_server_error(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.json("POST", "/prompt", {"unexpected": True})
    with pytest.raises(ComfyServerError):
        await client.submit({})


# -- reads ----------------------------------------------------------------------------------------------


async def test_history_returns_the_prompts_entry(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    body = captured("history_done.json")
    (pid,) = body
    recorder.json("GET", f"/history/{pid}", body)
    entry = await client.history(pid)
    assert entry is not None and entry["status"]["status_str"] == "success"


async def test_history_of_a_running_prompt_is_none(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.json("GET", "/history/abc", captured("history_while_running.json"))
    assert await client.history("abc") is None


async def test_view_returns_the_image_bytes(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    png = (CAPTURES / "view_output_64x64.png").read_bytes()
    recorder.raw("GET", "/view", png, content_type="image/png")
    data = await client.view(ImageRef("ComfyUI_00013_.png", "sub", "output"))
    assert data == png
    assert recorder.requests[0][1] == "/view?filename=ComfyUI_00013_.png&subfolder=sub&type=output"


async def test_view_of_a_missing_file_is_a_server_error(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.raw("GET", "/view", b"", status=404)
    with pytest.raises(ComfyServerError) as caught:
        await client.view(ImageRef("nope.png"))
    assert caught.value.status == 404


async def test_queue_lists_running_and_pending_ids(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.json("GET", "/queue", captured("queue_busy.json"))
    info = await client.queue()
    assert info == QueueInfo(
        ("173d38fe-d976-4c4d-a8e4-74fcc4b7bc71",),
        ("7179e62a-46ff-446b-bdb5-e4ee6d697a5e", "c22cce3c-1124-4e50-bf55-0e1eab6daeb5"),
    )
    assert (info.running, info.pending) == (1, 2)
    assert "c22cce3c-1124-4e50-bf55-0e1eab6daeb5" in info


async def test_system_stats_returns_the_body(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.json("GET", "/system_stats", captured("system_stats.json"))
    stats = await client.system_stats()
    assert stats["system"]["comfyui_version"] == "0.3.64"


# -- control calls: what they send ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "path", "body"),
    [
        (lambda c: c.free(), "/free", {"unload_models": True, "free_memory": True}),
        (lambda c: c.free(unload_models=False), "/free", {"unload_models": False, "free_memory": True}),
        (lambda c: c.interrupt("p1"), "/interrupt", {"prompt_id": "p1"}),
        (lambda c: c.interrupt(), "/interrupt", None),
        (lambda c: c.clear_queue(), "/queue", {"clear": True}),
        (lambda c: c.delete_queued(["a", "b"]), "/queue", {"delete": ["a", "b"]}),
    ],
    ids=["free", "free-keep-models", "interrupt-prompt", "interrupt-global", "clear", "delete"],
)
async def test_control_call_posts_comfyuis_body(
    recorded: tuple[Recorder, ComfyUIClient], call: Callable[[ComfyUIClient], Awaitable[None]], path: str, body: Any
) -> None:
    recorder, client = recorded
    recorder.raw("POST", path, b"", content_type="text/plain")  # ComfyUI: 200, empty body
    await call(client)
    assert recorder.requests == [("POST", path, body)]


async def test_control_call_non_200_is_a_server_error(recorded: tuple[Recorder, ComfyUIClient]) -> None:
    recorder, client = recorded
    recorder.raw("POST", "/free", b"500 Internal Server Error\n\nServer got itself in trouble", status=500)
    with pytest.raises(ComfyServerError):
        await client.free()


# -- network faults -------------------------------------------------------------------------------------


async def test_refused_connection_is_unreachable_and_a_503(session: aiohttp.ClientSession) -> None:
    client = ComfyUIClient(session, comfy_cfg(f"http://127.0.0.1:{free_port()}"), "cafe")
    with pytest.raises(ComfyUnreachable) as caught:
        await client.system_stats()
    api = caught.value.to_api_error()
    assert (api.status, api.code) == (503, "image.engine_unavailable")
    assert api.headers()["Retry-After"]


async def blackhole(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept, read everything, never answer."""
    with contextlib.suppress(Exception):
        while await reader.read(65536):
            pass
    writer.close()


async def test_blackholed_probe_fails_on_its_own_timeout(session: aiohttp.ClientSession) -> None:
    async with raw_server(blackhole) as url:
        client = ComfyUIClient(session, comfy_cfg(url), "cafe")
        with pytest.raises(ComfyUnreachable, match="no answer in time"):
            await asyncio.wait_for(client.system_stats(), HANG_GUARD)


async def test_blackholed_submit_fails_on_its_own_timeout(session: aiohttp.ClientSession) -> None:
    async with raw_server(blackhole) as url:
        client = ComfyUIClient(session, comfy_cfg(url), "cafe")
        with pytest.raises(ComfyUnreachable):
            await asyncio.wait_for(client.submit({}), HANG_GUARD)


async def test_connection_cut_mid_response_is_unreachable(session: aiohttp.ClientSession) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"sys")
        await writer.drain()
        writer.close()

    async with raw_server(cut) as url:
        client = ComfyUIClient(session, comfy_cfg(url), "cafe")
        with pytest.raises(ComfyUnreachable):
            await asyncio.wait_for(client.system_stats(), HANG_GUARD)


async def test_connection_closed_without_answer_is_unreachable(session: aiohttp.ClientSession) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with raw_server(hang_up) as url:
        client = ComfyUIClient(session, comfy_cfg(url), "cafe")
        with pytest.raises(ComfyUnreachable):
            await asyncio.wait_for(client.queue(), HANG_GUARD)
