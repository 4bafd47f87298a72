"""What a client sees when the slot misbehaves in ways llama-server will not do on demand.

The LLM slot here is a process slot whose process is only a placeholder (``sleep``; no readiness path,
so "ready" = the process runs) and whose ``url`` is a small aiohttp server in the test: it answers HTML
error pages, breaks a stream off, or echoes the headers it got. The img slot is the ComfyUI stand-in.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hal0_bridge.app import create_app
from hal0_bridge.config import build
from openai import AsyncOpenAI

from tests.daemon.conftest import FAST_COMFYUI
from tests.support.fake_llama import free_port

REPO = Path(__file__).resolve().parents[3]
TOKEN = "bridge-token-0123456789"
SLOT_KEY = "slot-key"


def chunk(text: str) -> bytes:
    data = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(data).encode() + b"\n\n"


class FakeUpstream:
    """The slot's HTTP side; ``behaviour`` is read from the request body's ``user`` field."""

    def __init__(self) -> None:
        self.seen_headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.seen_headers.append(dict(request.headers))
        raw = await request.read()
        self.bodies.append(raw)
        behaviour = json.loads(raw).get("user", "")
        if behaviour == "html502":
            return web.Response(status=502, text="<html><h1>502 Bad Gateway</h1></html>", content_type="text/html")
        if behaviour == "text500":
            return web.Response(status=500, text="segfault in ggml", content_type="text/plain")
        if behaviour == "openai500":
            return web.json_response({"error": {"message": "kv cache full", "type": "server_error", "code": 500}},
                                     status=500)  # fmt: skip
        if behaviour == "cut":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for word in ("one", "two", "three"):
                await resp.write(chunk(word))
                await asyncio.sleep(0.02)
            assert request.transport is not None
            request.transport.abort()  # the slot dies mid-stream
            return resp
        return web.json_response({"object": "chat.completion", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]})  # fmt: skip


@pytest.fixture
async def fake_upstream() -> AsyncIterator[tuple[FakeUpstream, str]]:
    upstream = FakeUpstream()
    app = web.Application()
    app.router.add_get("/v1/models", upstream.models)
    app.router.add_post("/v1/chat/completions", upstream.chat)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield upstream, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def bridge(
    aiohttp_client: Any, tmp_path: Path, fake_upstream: tuple[FakeUpstream, str]
) -> AsyncIterator[tuple[TestClient, AsyncOpenAI, FakeUpstream]]:
    upstream, url = fake_upstream
    comfy_port = free_port()
    timeouts = {"ready_timeout": 10.0, "stop_timeout": 2.0, "drain_timeout": 2.0, "poll_interval": 0.2}
    config = build({
        "server": {"state_dir": str(tmp_path / "state"), "token": TOKEN},
        "comfyui": {"url": f"http://127.0.0.1:{comfy_port}", **FAST_COMFYUI},
        "image": {"idle_restore_minutes": 0},
        "arbiter": {"min_mode_seconds": 0},
        "slots": {
            "chat": {"group": "llm", "backend": "process", "command": ["sleep", "600"], "url": url, "ready_path": "",
                     "autostart": True, "headers": {"Authorization": f"Bearer {SLOT_KEY}"}, **timeouts},
            "comfy": {"group": "img", "backend": "process", "cwd": str(REPO), **timeouts, "command": [
                sys.executable, "-m", "tests.support.comfyui_standin", "--host", "127.0.0.1", "--port", str(comfy_port)]},
        },
    })  # fmt: skip
    api: TestClient = await aiohttp_client(create_app(config))
    oai = AsyncOpenAI(base_url=str(api.make_url("/v1")), api_key=TOKEN, max_retries=0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:  # settled: inference, the placeholder slot running
        status = await (await api.get("/api/comfyui/status")).json()
        if not status["switchover"]["active"] and {"name": "chat", "group": "llm", "state": "ready"} in status["slots"]:
            break
        assert loop.time() < deadline, status
        await asyncio.sleep(0.02)
    try:
        yield api, oai, upstream
    finally:
        await oai.close()


def ask(user: str) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": "x"}], "user": user}


async def test_an_html_error_page_becomes_502_upstream_failed_with_the_slots_status(bridge: Any) -> None:
    api, oai, _ = bridge
    with pytest.raises(openai.APIStatusError) as info:
        await oai.chat.completions.create(**ask("html502"))
    assert info.value.status_code == 502
    assert info.value.code == "llm.upstream_failed"
    details = info.value.body["details"]  # type: ignore[index]
    assert details["status"] == 502 and "Bad Gateway" in details["body"] and details["slot"] == "chat"


async def test_a_plain_text_500_becomes_502(bridge: Any) -> None:
    _, oai, _ = bridge
    with pytest.raises(openai.APIStatusError) as info:
        await oai.chat.completions.create(**ask("text500"))
    assert (info.value.status_code, info.value.code) == (502, "llm.upstream_failed")
    assert "segfault" in info.value.body["details"]["body"]  # type: ignore[index]


async def test_an_openai_shaped_500_is_passed_on_as_it_is(bridge: Any) -> None:
    api, _, _ = bridge
    resp = await api.post("/v1/chat/completions", json=ask("openai500"), headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 500
    assert await resp.json() == {"error": {"message": "kv cache full", "type": "server_error", "code": 500}}


async def test_a_stream_broken_off_by_the_slot_ends_with_an_error_event(bridge: Any) -> None:
    _, oai, _ = bridge
    stream = await oai.chat.completions.create(**ask("cut"), stream=True)
    words: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for part in stream:
            words.append(part.choices[0].delta.content or "")
    assert words == ["one", "two", "three"]  # what came before the break was passed on
    assert "mid-stream" in info.value.message


async def test_the_bridge_token_stays_here_and_the_slot_gets_its_own_headers(bridge: Any) -> None:
    _, oai, upstream = bridge
    await oai.chat.completions.create(**ask("ok"))
    sent = upstream.seen_headers[-1]
    assert sent["Authorization"] == f"Bearer {SLOT_KEY}"
    assert TOKEN not in json.dumps(sent)
    assert json.loads(upstream.bodies[-1]) == ask("ok")


async def test_an_unknown_route_under_v1_is_still_the_envelope(bridge: Any) -> None:
    api, _, _ = bridge
    resp = await api.post("/v1/responses", json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "request.not_found"
