"""Drain against a real llama.cpp ``llama-server`` run by the bridge as a process LLM slot.

Drain that cannot see is not drain: with ``--api-key`` (401 on ``/slots``) or ``--no-slots`` (501) the
arbiter waits out ``drain_timeout`` and says why; with the slot's ``headers`` carrying the key it sees
the request in flight and waits for exactly that. Facts about the server: tests/daemon/test_llama_server.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.daemon.gpu.test_arbiter import HANG_GUARD, RigFactory
from tests.support.llama_server import LlamaServer, free_port

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
LONG_TOKENS = 1500  # long enough to be seen in flight (0.5-3 s here), see test_llama_server.py
KEY = "sekrit-key"

LlamaSlot = Callable[..., tuple[dict[str, Any], LlamaServer]]


@pytest.fixture
def llama_slot(llama_binary: Path, tiny_model: Path) -> LlamaSlot:
    """``llama_slot(api_key=..., slots=..., headers=..., **slot_keys)``: slot_overrides for llm1 that make
    the bridge run a real llama-server, and the (never started here) LlamaServer for its URL/headers."""

    def make(*, headers: dict[str, str] | None = None, api_key: str | None = None, slots: bool = True,
             **slot_keys: Any) -> tuple[dict[str, Any], LlamaServer]:  # fmt: skip
        server = LlamaServer(llama_binary, tiny_model, free_port(), api_key=api_key, slots=slots, ctx=8192)
        slot = {"command": server.argv, "url": server.url, "ready_path": "/health", "headers": headers or {}, **slot_keys}
        return {"llm1": slot}, server

    return make


async def chat(session: aiohttp.ClientSession, server: LlamaServer, max_tokens: int) -> tuple[int, Any]:
    async with session.post(
        f"{server.url}/v1/chat/completions", json={**CHAT, "max_tokens": max_tokens}, headers=server.headers()
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def until_processing(session: aiohttp.ClientSession, server: LlamaServer) -> None:
    async def loop() -> None:
        while True:
            async with session.get(f"{server.url}/slots", headers=server.headers()) as resp:
                if any(s["is_processing"] for s in await resp.json()):
                    return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), HANG_GUARD)


async def test_a_real_llama_server_round_trips_through_generation(rig_factory: RigFactory, llama_slot: LlamaSlot) -> None:
    overrides, server = llama_slot()
    rig = await rig_factory(slot_overrides=overrides)

    await rig.switch("generation")
    assert rig.slot_states()["llm1"] == "offline"
    end = await rig.switch("inference")

    assert end["type"] == "switch_finished" and rig.slot_states()["llm1"] == "ready"
    assert (await chat(rig.session, server, 4))[0] == 200


async def test_drain_waits_for_the_request_in_flight(rig_factory: RigFactory, llama_slot: LlamaSlot) -> None:
    overrides, server = llama_slot(drain_timeout=60.0)
    rig = await rig_factory(slot_overrides=overrides)
    request = asyncio.create_task(chat(rig.session, server, LONG_TOKENS))
    await until_processing(rig.session, server)

    end = await rig.switch("generation")
    status, answer = await request

    assert (status, answer["choices"][0]["finish_reason"]) == (200, "length")  # answered in full
    assert end["type"] == "switch_finished" and end["warnings"] == []
    assert rig.slot_states()["llm1"] == "offline"


async def test_api_key_without_headers_cannot_be_seen_so_drain_waits_it_out(
    rig_factory: RigFactory, llama_slot: LlamaSlot
) -> None:
    overrides, _ = llama_slot(api_key=KEY, drain_timeout=1.0)
    rig = await rig_factory(slot_overrides=overrides)

    end = await rig.switch("generation")

    assert end["type"] == "switch_finished"
    assert end["warnings"] == [
        "llm1: cannot see its work in flight (GET /slots answered 401); waited the whole 1s drain, then stopped it"
    ]
    assert end["phases"]["drain"] >= 1.0


async def test_api_key_with_the_slots_headers_drains_what_is_in_flight(
    rig_factory: RigFactory, llama_slot: LlamaSlot
) -> None:
    overrides, server = llama_slot(api_key=KEY, headers={"Authorization": f"Bearer {KEY}"}, drain_timeout=60.0)
    rig = await rig_factory(slot_overrides=overrides)
    request = asyncio.create_task(chat(rig.session, server, LONG_TOKENS))
    await until_processing(rig.session, server)

    end = await rig.switch("generation")
    status, answer = await request

    assert (status, answer["choices"][0]["finish_reason"]) == (200, "length")
    assert end["type"] == "switch_finished" and end["warnings"] == []


async def test_no_slots_endpoint_is_blind_too(rig_factory: RigFactory, llama_slot: LlamaSlot) -> None:
    overrides, _ = llama_slot(slots=False, drain_timeout=0.5)
    rig = await rig_factory(slot_overrides=overrides)

    end = await rig.switch("generation")

    assert len(end["warnings"]) == 1 and "GET /slots answered 501" in end["warnings"][0]
    assert end["phases"]["drain"] >= 0.5
