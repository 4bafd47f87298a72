"""Faults the stand-in can play for issue 10: uninterruptible work, memory that is only freed between
prompts, a fake amdgpu sysfs, lost websocket messages and a wedged ComfyUI.

What they model is ComfyUI's own behaviour (STANDIN-NOTES.md): an interrupt is only checked between
nodes and at sampler steps (comfy.model_management.throw_exception_if_processing_interrupted);
/free only sets flags that main.prompt_worker applies after the running prompt's task_done; history
records the outcome whatever happened to the sockets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.standin_client import (
    CLIENT,
    connect,
    example_body,
    get_json,
    history_entry,
    is_end,
    kinds,
    read_to_close,
    read_until,
    receive,
    run,
    submit,
)

FREE = {"unload_models": True, "free_memory": True}
MODEL_BYTES = 3_000_000_000


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


def executing(node: str):
    return lambda m: m.get("type") == "executing" and m["data"]["node"] == node


async def post(session: aiohttp.ClientSession, url: str, body: object = None) -> int:
    async with session.post(url, json=body) as resp:
        return resp.status


async def vram_free(session: aiohttp.ClientSession, comfy: ComfyStandIn) -> int:
    return int((await get_json(session, f"{comfy.url}/system_stats"))["devices"][0]["vram_free"])


async def until(predicate, timeout: float = 5.0) -> None:
    """Poll an async predicate (the worker applies /free on its own time)."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- uninterruptible work


async def test_interrupt_during_a_decode_lands_at_the_next_node(session):
    async with ComfyStandIn(decode_seconds=0.5) as comfy:
        ws = await connect(session, comfy)
        await submit(session, comfy, example_body())
        before = await read_until(ws, executing("8"))
        await post(session, f"{comfy.url}/interrupt")
        after = await read_until(ws, is_end)
    interrupted = next(m["data"] for m in after if m["type"] == "execution_interrupted")
    assert (interrupted["node_id"], interrupted["node_type"]) == ("9", "SaveImage")
    assert "8" in interrupted["executed"]  # the decode ran to its end
    assert "executed" not in kinds(before + after)


async def test_interrupt_during_the_model_load_lands_at_the_first_step(session):
    async with ComfyStandIn(load_seconds=0.5, model_vram_bytes=MODEL_BYTES) as comfy:
        ws = await connect(session, comfy)
        await submit(session, comfy, example_body(steps=4))
        await read_until(ws, executing("3"))
        await post(session, f"{comfy.url}/interrupt")
        after = await read_until(ws, is_end)
        assert comfy.models_loaded  # the load finished: its memory stays taken
    interrupted = next(m["data"] for m in after if m["type"] == "execution_interrupted")
    assert interrupted["node_id"] == "3"
    assert "progress" not in kinds(after)


async def test_steps_stay_interruptible(session):
    async with ComfyStandIn(step_seconds=0.2) as comfy:
        ws = await connect(session, comfy)
        await submit(session, comfy, example_body(steps=50))
        await read_until(ws, lambda m: m.get("type") == "progress")
        await post(session, f"{comfy.url}/interrupt")
        after = await read_until(ws, is_end)
    progress = [m["data"]["value"] for m in after if m["type"] == "progress"]
    assert max(progress, default=1) < 50


# --------------------------------------------------------------------------- /free between prompts


async def test_free_during_a_long_decode_keeps_models_until_the_prompt_ends(session):
    async with ComfyStandIn(decode_seconds=0.6, model_vram_bytes=MODEL_BYTES) as comfy:
        idle_free = await vram_free(session, comfy)
        ws = await connect(session, comfy)
        await submit(session, comfy, example_body())
        await read_until(ws, executing("8"))
        assert await post(session, f"{comfy.url}/free", FREE) == 200
        during = await vram_free(session, comfy)
        loaded_during = comfy.models_loaded
        await read_until(ws, is_end)

        async def freed() -> bool:
            return await vram_free(session, comfy) == idle_free

        await until(freed)
    assert (during, loaded_during) == (idle_free - MODEL_BYTES, True)
    assert not comfy.models_loaded


async def test_free_while_idle_applies_at_once(session):
    async with ComfyStandIn(model_vram_bytes=MODEL_BYTES) as comfy:
        idle_free = await vram_free(session, comfy)
        ws = await connect(session, comfy)
        await run(session, comfy, ws, example_body())
        assert await vram_free(session, comfy) == idle_free - MODEL_BYTES
        await post(session, f"{comfy.url}/free", {"unload_models": True})

        async def freed() -> bool:
            return await vram_free(session, comfy) == idle_free

        await until(freed)


async def test_unload_takes_unload_seconds_and_memory_falls_in_steps(session, tmp_path: Path):
    async with ComfyStandIn(model_vram_bytes=MODEL_BYTES, unload_seconds=0.5, gtt_sysfs_dir=str(tmp_path)) as comfy:
        ws = await connect(session, comfy)
        await run(session, comfy, ws, example_body())
        used_file = tmp_path / "card0" / "device" / "mem_info_gtt_used"
        loaded = int(used_file.read_text())
        await post(session, f"{comfy.url}/free", FREE)
        seen = set()
        async with asyncio.timeout(5):
            while (value := int(used_file.read_text())) > loaded - MODEL_BYTES:
                seen.add(value)
                await asyncio.sleep(0.01)
    assert any(loaded - MODEL_BYTES < v < loaded for v in seen)  # in between: falling, not gone at once


# --------------------------------------------------------------------------- fake amdgpu sysfs


async def test_gtt_sysfs_follows_model_loads_and_frees(session, tmp_path: Path):
    total, free = 100_000_000_000, 90_000_000_000
    async with ComfyStandIn(vram_total=total, vram_free=free, model_vram_bytes=MODEL_BYTES, gtt_sysfs_dir=str(tmp_path)) as comfy:
        device = tmp_path / "card0" / "device"

        def used() -> int:
            return int((device / "mem_info_gtt_used").read_text())

        assert ((device / "mem_info_gtt_total").read_text(), used()) == (f"{total}\n", total - free)
        ws = await connect(session, comfy)
        await run(session, comfy, ws, example_body())
        assert used() == total - free + MODEL_BYTES
        stats = (await get_json(session, f"{comfy.url}/system_stats"))["devices"][0]
        assert stats["vram_total"] - stats["vram_free"] == used()  # both gauges tell the same story
        await post(session, f"{comfy.url}/free", FREE)

        async def back() -> bool:
            return used() == total - free

        await until(back)


async def test_gtt_sysfs_dir_can_be_set_over_http(session, tmp_path: Path):
    async with ComfyStandIn() as comfy:
        assert await post(session, f"{comfy.url}/_standin/config", {"gtt_sysfs_dir": str(tmp_path)}) == 200
        assert (tmp_path / "card0" / "device" / "mem_info_gtt_total").is_file()


# --------------------------------------------------------------------------- lost websocket messages


@pytest.mark.parametrize("lost", ["executed", "execution_success"])
async def test_a_lost_message_is_missing_on_the_socket_but_history_is_true(session, lost):
    async with ComfyStandIn(drop_messages=[lost], drop_messages_prompts=1) as comfy:
        ws = await connect(session, comfy)
        prompt_id, messages = await run(session, comfy, ws, example_body())
        entry = await history_entry(session, comfy, prompt_id)
        _, next_messages = await run(session, comfy, ws, example_body(seed=9))
    assert lost not in kinds(messages)
    assert entry["status"]["status_str"] == "success" and entry["outputs"]["9"]["images"]
    assert "execution_success" in [m[0] for m in entry["status"]["messages"]]
    assert lost in kinds(next_messages)  # only the next N prompts lose it


async def test_a_lost_execution_error_leaves_the_error_in_history(session):
    async with ComfyStandIn(fail_next_prompts=1, drop_messages=["execution_error"], drop_messages_prompts=1) as comfy:
        ws = await connect(session, comfy)
        prompt_id, messages = await run(session, comfy, ws, example_body())
        entry = await history_entry(session, comfy, prompt_id)
    assert "execution_error" not in kinds(messages) and "execution_success" not in kinds(messages)
    assert kinds(messages)[-1] == "executing"  # the end still comes
    assert (entry["status"]["status_str"], entry["status"]["messages"][-1][0]) == ("error", "execution_error")


async def test_binary_frames_can_be_lost(session):
    async with ComfyStandIn(preview_method="latent2rgb", drop_messages=["binary"], drop_messages_prompts=1) as comfy:
        ws = await connect(session, comfy)
        _, messages = await run(session, comfy, ws, example_body(steps=2))
    assert "binary" not in kinds(messages) and kinds(messages).count("progress") == 2


async def test_socket_closes_after_the_chosen_message_and_a_reconnect_follows_the_run(session):
    async with ComfyStandIn(step_seconds=0.05, ws_close_after="progress") as comfy:
        ws = await connect(session, comfy)
        prompt_id = await submit(session, comfy, example_body(steps=6))
        before = await read_to_close(ws)
        assert kinds(before)[-1] == "progress"  # nothing after it on the old socket
        again = await session.ws_connect(comfy.ws_url(CLIENT))
        first, second = await receive(again), await receive(again)
        rest = await read_until(again, is_end)
        entry = await history_entry(session, comfy, prompt_id)
    assert first is not None and first["type"] == "status"
    assert second == {"type": "executing", "data": {"node": "3"}}  # ws_reconnect_during_run.jsonl
    assert "execution_success" in kinds(rest)
    assert entry["status"]["status_str"] == "success"
    assert comfy.settings.ws_close_after == ""  # one-shot


# --------------------------------------------------------------------------- a wedged ComfyUI


async def test_a_hung_node_keeps_the_prompt_running_through_interrupt_and_free(session):
    async with ComfyStandIn(hang_class_type="VAEDecode", model_vram_bytes=MODEL_BYTES) as comfy:
        ws = await connect(session, comfy)
        prompt_id = await submit(session, comfy, example_body())
        await read_until(ws, executing("8"))
        assert await post(session, f"{comfy.url}/interrupt") == 200
        assert await post(session, f"{comfy.url}/free", FREE) == 200
        await asyncio.sleep(0.2)
        queue = await get_json(session, f"{comfy.url}/queue")
        assert [item[1] for item in queue["queue_running"]] == [prompt_id]
        assert comfy.models_loaded
        await post(session, f"{comfy.url}/_standin/config", {"hang_class_type": ""})  # the GPU recovers
        after = await read_until(ws, is_end)
    interrupted = next(m["data"] for m in after if m["type"] == "execution_interrupted")
    assert interrupted["node_id"] == "9"  # the pending interrupt lands at the next check


async def test_http_delay_makes_free_hang_until_the_client_gives_up(session):
    async with ComfyStandIn(model_vram_bytes=MODEL_BYTES) as comfy:
        ws = await connect(session, comfy)
        await run(session, comfy, ws, example_body())
        comfy.settings.http_delay_seconds = 30
        with pytest.raises(TimeoutError):
            async with session.post(f"{comfy.url}/free", json=FREE, timeout=aiohttp.ClientTimeout(total=0.3)):
                pass
        assert (comfy.counters.free_calls, comfy.models_loaded) == (0, True)
