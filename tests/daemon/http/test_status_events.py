"""Status from memory (also with ComfyUI dead or blackholed) and the SSE feed."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app

from tests.daemon.conftest import make_config
from tests.support.comfyui_standin import ComfyStandIn


async def wait_for_status(api: TestClient, predicate: Any, timeout: float = 5.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await (await api.get("/api/comfyui/status")).json()
        if predicate(status) or loop.time() > deadline:
            return status
        await asyncio.sleep(0.05)


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


async def test_without_comfyui_the_engine_is_stopped(aiohttp_client: Any, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    api = await aiohttp_client(create_app(make_config(tmp_path, url)))
    status = await (await api.get("/api/comfyui/status")).json()
    assert status["engine"] == "stopped" and status["reachable"] is False
    assert status["queue"] == {"running": 0, "pending": 0} and status["progress"] is None


async def test_blackholed_comfyui_reads_unreachable_and_status_stays_fast(
    aiohttp_client: Any, tmp_path: Path, blackhole: str
) -> None:
    api = await aiohttp_client(create_app(make_config(tmp_path, blackhole)))
    status = await wait_for_status(api, lambda s: s["engine"] == "stopped")
    assert status["reachable"] is False
    # many status reads while every probe hangs: each answers from memory
    results = await asyncio.gather(*(api.get("/api/comfyui/status") for _ in range(50)))
    assert all(r.status == 200 for r in results)


async def test_running_comfyui_reads_running_with_memory(api: TestClient, standin: ComfyStandIn) -> None:
    # the websocket can report ComfyUI reachable before the first /system_stats probe brings memory
    status = await wait_for_status(api, lambda s: s["reachable"] and s["memory"]["ram_total"] is not None)
    assert status["engine"] == "running"
    # published at the [telemetry] memory_step_gib resolution (0.01 GiB): within half a step of the truth
    half_step = 0.005 * 1024**3
    assert abs(status["memory"]["ram_total"] - standin.settings.ram_total) <= half_step
    assert abs(status["memory"]["ram_used"] - (standin.settings.ram_total - standin.settings.ram_free)) <= half_step


async def test_engine_flips_to_stopped_and_back(api: TestClient, standin: ComfyStandIn) -> None:
    await wait_for_status(api, lambda s: s["reachable"])
    port = standin.port
    await standin.stop()
    assert (await wait_for_status(api, lambda s: not s["reachable"]))["engine"] == "stopped"
    revived = ComfyStandIn(port=port)
    await revived.start()
    try:
        assert (await wait_for_status(api, lambda s: s["reachable"]))["engine"] == "running"
    finally:
        await revived.stop()


async def sse_messages(resp: ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    event = "message"
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, json.loads(line[6:])
            event = "message"


async def test_events_stream_starts_with_the_snapshot(api: TestClient) -> None:
    resp = await api.get("/api/events")
    assert resp.content_type == "text/event-stream"
    event, data = await asyncio.wait_for(anext(sse_messages(resp)), 5)
    assert event == "status" and data["mode"] in ("inference", "generation")
    resp.close()


async def test_events_carry_image_generated(api: TestClient) -> None:
    resp = await api.get("/api/events")
    stream = sse_messages(resp)
    await asyncio.wait_for(anext(stream), 5)
    gen = await api.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "seed": 5})
    url = (await gen.json())["data"][0]["url"]

    async def find() -> dict[str, Any]:
        async for event, data in stream:
            if event == "image_generated":
                return data
        raise AssertionError("stream ended")

    data = await asyncio.wait_for(find(), 5)
    assert data["urls"] == [url] and data["seed"] == 5 and data["type"] == "image_generated"
    resp.close()


async def test_events_carry_render_failed(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.get("/api/events")
    stream = sse_messages(resp)
    await asyncio.wait_for(anext(stream), 5)
    standin.settings.fail_next_prompts = 1
    await api.post("/v1/images/generations", json={"prompt": "x", "size": "64x64"})

    async def find() -> dict[str, Any]:
        async for event, data in stream:
            if event == "render_failed":
                return data
        raise AssertionError("stream ended")

    assert (await asyncio.wait_for(find(), 5))["code"] == "image.upstream_failed"
    resp.close()


async def test_status_changes_are_pushed(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.get("/api/events")
    stream = sse_messages(resp)

    async def until_reachable() -> dict[str, Any]:
        async for event, data in stream:
            if event == "status" and data["reachable"]:
                return data
        raise AssertionError("stream ended")

    assert (await asyncio.wait_for(until_reachable(), 5))["engine"] == "running"
    resp.close()


async def test_ping_comments_keep_the_stream_alive(aiohttp_client: Any, bridge_config: Any) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"sse_ping_interval": 0.1})))
    resp = await api.get("/api/events")
    lines: list[str] = []

    async def until_ping() -> None:
        async for raw in resp.content:
            lines.append(raw.decode())
            if raw.startswith(b": ping"):
                return

    await asyncio.wait_for(until_ping(), 5)
    resp.close()
