"""The LLM proxy rig: the whole bridge app with a real llama-server and the ComfyUI stand-in as its slots.

Both slots are process slots the bridge runs itself (as in tests/daemon/gpu/test_arbiter.py): the LLM
slot is the real ``llama-server`` binary serving the tiny model under ``--alias tiny``; the img slot is
the ComfyUI stand-in. Clients are the official ``openai`` package and plain aiohttp.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import Bridge, create_app
from hal0_bridge.config import Config, build
from hal0_bridge.http.server import BRIDGE_KEY
from hal0_bridge.status import Subscription
from openai import AsyncOpenAI

from tests.daemon.conftest import FAST_COMFYUI
from tests.support.fake_llama import free_port
from tests.support.llama_server import LlamaServer

REPO = Path(__file__).resolve().parents[3]
HANG_GUARD = 30.0  # a broken wait must fail the test, not hang it; never a speed assertion
MODEL = "tiny"
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def standin_command(port: int) -> list[str]:
    return [sys.executable, "-m", "tests.support.comfyui_standin", "--host", "127.0.0.1", "--port", str(port)]


@dataclass
class LlmRig:
    api: TestClient
    config: Config
    llama_port: int
    comfy_port: int
    openai: AsyncOpenAI
    subs: list[Subscription] = field(default_factory=list)

    @property
    def bridge(self) -> Bridge:
        bridge: Bridge = self.api.app[BRIDGE_KEY]
        return bridge

    @property
    def llama_url(self) -> str:
        return f"http://127.0.0.1:{self.llama_port}"

    @property
    def comfy_url(self) -> str:
        return f"http://127.0.0.1:{self.comfy_port}"

    def status(self) -> dict[str, Any]:
        return self.bridge.hub.status.to_dict()

    def watch(self) -> Subscription:
        sub = self.bridge.hub.subscribe(initial=False)
        self.subs.append(sub)
        return sub

    async def until(self, check: Callable[[], bool], what: str, timeout: float = HANG_GUARD) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            if loop.time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; status {self.status()}")
            await asyncio.sleep(0.01)

    async def settled(self, mode: str = "inference") -> None:
        """Wait until ``mode`` is held, no switch runs and (inference) the LLM slot is ready."""
        arbiter = self.bridge.arbiter
        assert arbiter is not None

        def done() -> bool:
            slots = {s["name"]: s["state"] for s in self.status()["slots"]}
            return arbiter.mode == mode and not arbiter.switching and (mode != "inference" or slots["chat"] == "ready")

        await self.until(done, f"{mode} settled")

    async def switch(self, mode: str, **body: Any) -> None:
        resp = await self.api.post("/api/comfyui/switchover", json={"mode": mode, **body})
        assert resp.status in (200, 202), await resp.text()
        await self.settled(mode)

    async def slots_busy(self) -> int:
        """llama-server's own view: how many of its slots are processing (``GET /slots``)."""
        async with aiohttp.ClientSession() as session, session.get(self.llama_url + "/slots") as resp:
            return sum(1 for s in await resp.json() if s["is_processing"])


async def events_of(sub: Subscription, kind: str, count: int, timeout: float = HANG_GUARD) -> list[dict[str, Any]]:
    """The next ``count`` events of type ``kind`` on ``sub``."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        msg = await asyncio.wait_for(sub.get(), timeout)
        if msg.kind == "event" and msg.data["type"] == kind:
            found.append(msg.data)
    return found


RigFactory = Callable[..., Awaitable[LlmRig]]


@pytest.fixture
async def llm_rig(
    aiohttp_client: Any, tmp_path: Path, llama_binary: Path, tiny_model: Path
) -> AsyncIterator[RigFactory]:
    """``await llm_rig(llm={...}, arbiter={...}, slot={...}, llama_args=[...])``: a started bridge,
    settled in inference with the LLM slot ready, and an ``openai`` client on its ``/v1``."""
    rigs: list[LlmRig] = []

    async def make(
        *,
        llm: dict[str, Any] | None = None,
        arbiter: dict[str, Any] | None = None,
        slot: dict[str, Any] | None = None,
        llama_args: list[str] | None = None,
        ctx: int = 512,
        embeddings: bool = False,
        server: dict[str, Any] | None = None,
        settle: bool = True,
        model: Path | None = None,
    ) -> LlmRig:
        llama_port, comfy_port = free_port(), free_port()
        llama = LlamaServer(llama_binary, model or tiny_model, llama_port, ctx=ctx, embeddings=embeddings, alias=MODEL,
                            extra_args=tuple(llama_args or ()))  # fmt: skip
        timeouts = {"ready_timeout": 20.0, "stop_timeout": 3.0, "drain_timeout": 5.0, "probe_timeout": 1.0,
                    "poll_interval": 0.2}  # fmt: skip
        config = build(
            {
                "server": {"state_dir": str(tmp_path / f"state{len(rigs)}"), **(server or {})},
                "comfyui": {"url": f"http://127.0.0.1:{comfy_port}", **FAST_COMFYUI},
                "image": {"idle_restore_minutes": 0},
                "arbiter": {"min_mode_seconds": 0, **(arbiter or {})},
                "llm": llm or {},
                "slots": {
                    "chat": {"group": "llm", "backend": "process", "command": llama.argv, "autostart": True,
                             "url": llama.url, "ready_path": "/health", **timeouts, **(slot or {})},
                    "comfy": {"group": "img", "backend": "process", "command": standin_command(comfy_port),
                              "cwd": str(REPO), **timeouts},
                },
            }
        )  # fmt: skip
        api: TestClient = await aiohttp_client(create_app(config))
        token = config.server.token or "unused"
        oai = AsyncOpenAI(base_url=str(api.make_url("/v1")), api_key=token, max_retries=0)
        rig = LlmRig(api, config, llama_port, comfy_port, oai)
        rigs.append(rig)
        if settle:
            await rig.settled()
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            for sub in rig.subs:
                sub.close()
            await rig.openai.close()
