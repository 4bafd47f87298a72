"""Demand-driven switching: LLM calls in generation mode, image calls during LLM work, no thrash.

Real parts throughout: the bridge runs a real llama-server and the ComfyUI stand-in as its slots.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.daemon.llm.conftest import CHAT, MODEL, LlmRig, RigFactory, events_of
from tests.support.fake_llama import free_port

LONG = 1500  # tokens: ~0.5-3 s with -c 4096, a call that is visibly in flight
IMAGE = {"prompt": "a lighthouse", "size": "64x64"}


async def standin_config(rig: LlmRig, **changes: Any) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(rig.comfy_url + "/_standin/config", json=changes) as resp:
            assert resp.status == 200, await resp.text()


def switch_events(events: list[dict[str, Any]], target: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "switch_started" and e["target"] == target]


async def collect(rig: LlmRig) -> tuple[list[dict[str, Any]], asyncio.Task[None]]:
    """Every event from now on, gathered in the background."""
    sub = rig.watch()
    seen: list[dict[str, Any]] = []

    async def run() -> None:
        rendering = False
        async for msg in sub:
            if msg.kind == "event":
                seen.append(msg.data)
            elif rendering and not msg.data["queue"]["running"]:
                seen.append({"type": "render_ended", "time": msg.data["updated_at"]})  # as the hub saw it
            if msg.kind == "status":
                rendering = bool(msg.data["queue"]["running"])

    return seen, asyncio.ensure_future(run())


# ------------------------------------------------------------------------------ LLM calls in generation mode


async def test_a_chat_call_in_generation_mode_switches_to_inference_and_is_answered(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    await rig.switch("generation")
    sub = rig.watch()

    raw = await rig.openai.chat.completions.with_raw_response.create(
        model=MODEL, messages=CHAT["messages"], max_tokens=4
    )

    answer = raw.parse()
    assert answer.choices[0].finish_reason == "length"
    assert rig.status()["mode"] == "inference"
    assert rig.status()["switchover"]["trigger"] == "llm"
    queued = (await events_of(sub, "llm_queued", 1))[0]
    assert (queued["slot"], queued["model"], queued["position"], queued["mode"]) == ("chat", MODEL, 1, "generation")
    waited = (await events_of(sub, "llm_switch_wait", 1))[0]
    assert waited["outcome"] == "admitted" and waited["wait_s"] > 0
    assert float(raw.headers["X-Hal0-Wait"]) >= waited["wait_s"] - 0.01


async def test_a_stream_in_generation_mode_switches_and_streams(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    await rig.switch("generation")
    stream = await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=6, stream=True)
    tokens = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert len(tokens) == 6


async def test_pinned_generation_refuses_at_once_with_retry_after(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    await rig.switch("generation", pin=True)
    started = time.monotonic()

    with pytest.raises(openai.InternalServerError) as info:
        await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=4)

    assert time.monotonic() - started < 1.0  # at once, not after a wait (a generous bound for a busy box)
    assert info.value.status_code == 503
    assert info.value.code == "gpu.image_mode"
    assert info.value.response.headers["Retry-After"].isdigit()
    assert rig.status()["mode"] == "generation" and not rig.status()["switchover"]["active"]
    assert rig.status()["llm"]["queued"] == 0


async def test_auto_switch_off_refuses_in_generation_mode(llm_rig: RigFactory) -> None:
    rig = await llm_rig(llm={"auto_switch": False})
    await rig.switch("generation")
    resp = await rig.api.post("/v1/chat/completions", json=CHAT)
    assert resp.status == 503
    assert (await resp.json())["error"]["details"] == {"pinned": False, "auto_switch": False}
    assert resp.headers["Retry-After"].isdigit()


async def test_auto_switch_off_still_waits_for_a_switch_to_inference_someone_else_started(
    llm_rig: RigFactory,
) -> None:
    rig = await llm_rig(llm={"auto_switch": False})
    await rig.switch("generation")
    resp = await rig.api.post("/api/comfyui/switchover", json={"mode": "inference"})
    assert resp.status == 202

    answer = await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=2)
    assert answer.choices[0].finish_reason == "length"
    assert rig.status()["switchover"]["trigger"] == "api"


async def test_fifty_concurrent_calls_during_a_switch_are_all_answered_in_order_per_client(
    llm_rig: RigFactory,
) -> None:
    rig = await llm_rig()
    seen, collector = await collect(rig)
    resp = await rig.api.post("/api/comfyui/switchover", json={"mode": "generation"})
    assert resp.status == 202  # the calls below arrive while this switch runs, then need the next one

    async def arrived_at_bridge(request_id: str) -> None:
        await rig.until(lambda: any(e.get("request_id") == request_id for e in seen if e["type"] == "llm_queued"),
                        f"{request_id} queued")  # fmt: skip

    async def client(c: int) -> list[tuple[int, int]]:
        """Five calls, each sent once the previous one is waiting at the bridge (not waiting for answers)."""
        calls = []
        for k in range(5):
            calls.append(asyncio.ensure_future(rig.openai.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": f"client {c} call {k}"}], max_tokens=4,
                extra_headers={"X-Request-Id": f"{c}.{k}"})))  # fmt: skip
            await arrived_at_bridge(f"{c}.{k}")
        answers = await asyncio.gather(*calls)
        for raw in answers:
            assert raw.parse().choices[0].finish_reason == "length"
        return [(k, int(raw.headers["X-Hal0-Admission"])) for k, raw in enumerate(answers)]

    per_client = await asyncio.gather(*(client(c) for c in range(10)))

    assert sum(len(x) for x in per_client) == 50  # none lost
    for admissions in per_client:  # each client's calls went to the slot in the order it sent them
        numbers = [n for _k, n in admissions]
        assert numbers == sorted(numbers), admissions
    # and across clients: let through in exactly the order they arrived (FIFO)
    admitted = sorted((n, f"{c}.{k}") for c, adm in enumerate(per_client) for k, n in adm)
    arrived = [e["request_id"] for e in seen if e["type"] == "llm_queued"]
    assert [rid for _n, rid in admitted] == arrived
    assert len({n for adm in per_client for _k, n in adm}) == 50
    queued = [e for e in seen if e["type"] == "llm_queued"]
    assert len(queued) == 50  # every one of them waited for the GPU
    waits = [e for e in seen if e["type"] == "llm_switch_wait"]
    assert {e["outcome"] for e in waits} == {"admitted"}
    assert len(switch_events(seen, "inference")) == 1  # one switch for all of them
    assert rig.status()["mode"] == "inference"
    await rig.until(lambda: rig.status()["llm"] == {"in_flight": 0, "queued": 0, "models": [MODEL]}, "idle")
    collector.cancel()


async def test_a_full_queue_answers_429_with_retry_after(llm_rig: RigFactory) -> None:
    rig = await llm_rig(llm={"queue_max": 2})
    await rig.switch("generation")
    await standin_config(rig, step_seconds=0.1)
    render = asyncio.ensure_future(rig.api.post("/v1/images/generations", json={**IMAGE, "steps": 20}))
    await rig.until(lambda: rig.status()["queue"]["running"] == 1, "render running")
    waiting = [asyncio.ensure_future(rig.api.post("/v1/chat/completions", json=CHAT)) for _ in range(2)]
    await rig.until(lambda: rig.bridge.llm is not None and rig.bridge.llm._demand.queued == 2, "two queued")

    third = await rig.api.post("/v1/chat/completions", json=CHAT)

    assert third.status == 429
    assert (await third.json())["error"]["code"] == "llm.queue_full"
    assert third.headers["Retry-After"].isdigit()
    assert (await render).status == 200
    assert [r.status for r in await asyncio.gather(*waiting)] == [200, 200]


async def test_the_wait_is_bounded_by_llm_wait_timeout(llm_rig: RigFactory) -> None:
    rig = await llm_rig(llm={"wait_timeout": 0.5})
    await rig.switch("generation")
    await standin_config(rig, step_seconds=0.1)
    render = asyncio.ensure_future(rig.api.post("/v1/images/generations", json={**IMAGE, "steps": 30}))
    await rig.until(lambda: rig.status()["queue"]["running"] == 1, "render running")

    started = time.monotonic()
    resp = await rig.api.post("/v1/chat/completions", json=CHAT)

    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "llm.wait_timeout"
    assert 0.5 <= time.monotonic() - started < 3.0
    assert (await render).status == 200  # the render was never disturbed
    assert rig.status()["llm"]["queued"] == 0


# ------------------------------------------------------------------------------ the other way, and no thrash


async def test_an_image_call_waits_for_the_llm_call_in_flight_then_switches(llm_rig: RigFactory) -> None:
    rig = await llm_rig(ctx=4096)
    seen, collector = await collect(rig)
    chat = asyncio.ensure_future(rig.openai.chat.completions.create(
        model=MODEL, messages=CHAT["messages"], max_tokens=LONG))  # fmt: skip
    await rig.until(lambda: rig.status()["llm"]["in_flight"] == 1, "chat in flight")

    image = await rig.api.post("/v1/images/generations", json=IMAGE)
    chat_done_at = time.time()

    assert image.status == 200
    answer = await chat
    assert answer.usage is not None and answer.usage.completion_tokens == LONG  # not cut short by the switch
    finished = next(e for e in seen if e["type"] == "switch_finished" and e["target"] == "generation")
    assert finished["warnings"] == []  # drained, not stopped anyway
    assert finished["phases"]["drain"] > 0.05
    assert finished["time"] <= chat_done_at
    collector.cancel()


async def test_min_mode_seconds_holds_generation_against_an_llm_call(llm_rig: RigFactory) -> None:
    rig = await llm_rig(arbiter={"min_mode_seconds": 1.5})
    await rig.switch("generation")  # a manual switch is not demand: no residency before it
    entered = rig.bridge.arbiter.state.since  # type: ignore[union-attr]
    assert entered is not None

    raw = await rig.openai.chat.completions.with_raw_response.create(model=MODEL, messages=CHAT["messages"], max_tokens=2)

    started = rig.status()["switchover"]["started_at"]
    assert started >= entered + 1.5 - 0.01
    assert float(raw.headers["X-Hal0-Wait"]) > 1.0


async def test_alternating_demand_keeps_each_mode_for_its_residency(llm_rig: RigFactory) -> None:
    """Inference just entered, min 1.5 s: an image call waits out the rest, LLM calls keep flowing meanwhile,
    then the switch to generation happens once; an LLM call after it waits for generation's residency."""
    rig = await llm_rig(arbiter={"min_mode_seconds": 1.5})
    seen, collector = await collect(rig)
    await rig.switch("generation")
    await rig.switch("inference")
    entered_inference = rig.bridge.arbiter.state.since  # type: ignore[union-attr]
    assert entered_inference is not None

    image = asyncio.ensure_future(rig.api.post("/v1/images/generations", json=IMAGE))
    chats = []
    for _ in range(5):  # during the image call's wait, inference is still held: LLM calls go straight through
        raw = await rig.openai.chat.completions.with_raw_response.create(model=MODEL, messages=CHAT["messages"],
                                                                        max_tokens=2)  # fmt: skip
        chats.append(float(raw.headers["X-Hal0-Wait"]))
        await asyncio.sleep(0.1)
    assert max(chats) < 0.5
    assert (await image).status == 200
    to_generation = switch_events(seen, "generation")[-1]
    assert to_generation["trigger"] == "image"
    assert to_generation["time"] >= entered_inference + 1.5 - 0.01

    entered_generation = rig.bridge.arbiter.state.since  # type: ignore[union-attr]
    assert entered_generation is not None
    await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=2)
    to_inference = switch_events(seen, "inference")[-1]
    assert to_inference["trigger"] == "llm"
    assert to_inference["time"] >= entered_generation + 1.5 - 0.01
    collector.cancel()


async def test_an_llm_demand_waits_for_the_render_in_flight_and_holds_new_renders_back(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    seen, collector = await collect(rig)
    await rig.switch("generation")
    await standin_config(rig, step_seconds=0.05)
    first = asyncio.ensure_future(rig.api.post("/v1/images/generations", json={**IMAGE, "steps": 20}))
    await rig.until(lambda: rig.status()["queue"]["running"] == 1, "render running")

    chat = asyncio.ensure_future(rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"],
                                                                   max_tokens=2))  # fmt: skip
    await rig.until(lambda: rig.status()["llm"]["queued"] == 1, "chat queued")
    second = asyncio.ensure_future(rig.api.post("/v1/images/generations", json={**IMAGE, "steps": 2}))

    assert (await first).status == 200  # the render in flight finished undisturbed
    await chat  # then the LLM call got its turn ...
    assert (await second).status == 200  # ... and the image call that came during the wait came after it
    kinds = [(e["type"], e.get("target")) for e in seen if e["type"] in ("switch_started", "render_ended")]
    assert kinds[-4:] == [("render_ended", None), ("switch_started", "inference"),
                          ("switch_started", "generation"), ("render_ended", None)]  # fmt: skip
    collector.cancel()


# ------------------------------------------------------------------------------ slots that are not there


SLOW_SUPERVISION = {"restart_backoff": 60.0, "restart_backoff_max": 60.0}  # no restart while a test looks


async def kill_chat(rig: LlmRig) -> tuple[Any, int]:
    """SIGKILL the chat slot's llama-server and wait until the bridge saw it die: (slot, dead pid)."""
    assert rig.bridge.slots is not None
    slot = rig.bridge.slots.get("chat")
    assert slot is not None and slot.backend.pid is not None  # type: ignore[union-attr]
    pid: int = slot.backend.pid  # type: ignore[union-attr]
    os.killpg(pid, signal.SIGKILL)
    await rig.until(lambda: slot.state in ("offline", "error"), "slot seen dead")
    return slot, pid


async def test_a_call_to_a_dead_slot_brings_it_back_and_is_answered(llm_rig: RigFactory) -> None:
    """Supervision waits its backoff (60 s here); the call does not: inference with a saved slot down is
    not settled, so the call's switch to inference starts the slot again and the call is answered."""
    rig = await llm_rig(arbiter=SLOW_SUPERVISION)
    slot, dead_pid = await kill_chat(rig)
    seen, collector = await collect(rig)

    resp = await rig.api.post("/v1/chat/completions", json=CHAT)

    assert resp.status == 200, await resp.text()
    assert (await resp.json())["choices"][0]["message"]["role"] == "assistant"
    assert slot.backend.pid not in (None, dead_pid)  # type: ignore[union-attr]
    assert [e["trigger"] for e in switch_events(seen, "inference")] == ["llm"]
    collector.cancel()


async def test_a_dead_slot_that_cannot_start_is_an_error_not_a_refused_connection(
    llm_rig: RigFactory, tiny_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "vanishing.gguf"
    shutil.copy(tiny_model, model)
    rig = await llm_rig(model=model, arbiter=SLOW_SUPERVISION)
    model.unlink()  # the running server keeps its mapping; a new one cannot load the model
    await kill_chat(rig)

    resp = await rig.api.post("/v1/chat/completions", json=CHAT)

    assert resp.status == 503, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == "comfyui.switch_failed"
    assert "chat" in body["error"]["message"]
    assert resp.headers["Retry-After"] == "10"


async def test_a_refused_connection_to_a_ready_slot_is_tried_again_then_a_502(llm_rig: RigFactory) -> None:
    """The slot counts as ready (its process runs; no readiness path) but nothing listens at its url."""
    rig = await llm_rig(slot={"url": f"http://127.0.0.1:{free_port()}", "ready_path": ""})
    sub = rig.watch()

    resp = await rig.api.post("/v1/chat/completions", json=CHAT)

    assert resp.status == 502
    body = await resp.json()
    assert body["error"]["code"] == "llm.upstream_failed"
    assert "cannot be reached" in body["error"]["message"]
    await rig.until(lambda: rig.status()["llm"]["in_flight"] == 0, "nothing left in flight")
    sub.close()


async def test_a_failed_switch_answers_every_waiter_with_one_switch(
    llm_rig: RigFactory, tiny_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    shutil.copy(tiny_model, model)
    rig = await llm_rig(slot={"ready_timeout": 3.0}, model=model)  # a copy that goes away in generation mode
    await rig.switch("generation")
    model.unlink()
    seen, collector = await collect(rig)

    answers = await asyncio.gather(*(rig.api.post("/v1/chat/completions", json=CHAT) for _ in range(5)))

    assert [a.status for a in answers] == [503] * 5
    assert {(await a.json())["error"]["code"] for a in answers} == {"comfyui.switch_failed"}
    assert len(switch_events(seen, "inference")) == 1
    collector.cancel()
