"""Supervision and a hung ComfyUI: slots that die by themselves come back, a wedged ComfyUI does not hold
the GPU forever. Real processes (fake llama.cpp servers, the ComfyUI stand-in), killed for real."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from tests.daemon.gpu.test_arbiter import HANG_GUARD, Rig, RigFactory, standin_command

FAST_RESTART = {"restart_backoff": 0.1, "restart_backoff_max": 5.0}
NO_RESTART = {"restart_backoff": 600.0, "restart_backoff_max": 600.0}  # supervision never gets to act
SLOW_POLL = {"poll_interval": 60.0}  # a death must be noticed without waiting for a state poll


def kill(rig: Rig, slot: str) -> int:
    pid = rig.slots.get(slot).backend.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    return pid


async def next_event(rig: Rig, sub: Any, kind: str, seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    while True:
        msg = await asyncio.wait_for(sub.get(), HANG_GUARD)
        if msg.kind != "event":
            continue
        if seen is not None:
            seen.append(msg.data)
        if msg.data["type"] == kind:
            return msg.data


async def until_state(rig: Rig, slot: str, state: str) -> None:
    async def loop() -> None:
        while rig.slot_states()[slot] != state:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), HANG_GUARD)


# ------------------------------------------------------------------------------ supervision


async def test_an_llm_process_that_dies_is_noticed_at_once_and_restarted(rig_factory: RigFactory) -> None:
    rig = await rig_factory(slot_overrides={"llm1": SLOW_POLL, "comfy": SLOW_POLL}, arbiter_cfg=FAST_RESTART)
    sub = rig.watch()
    old_pid = kill(rig, "llm1")

    failed = await asyncio.wait_for(next_event(rig, sub, "slot_failed"), 2.0)  # not after a 60 s poll
    restarted = await next_event(rig, sub, "slot_restarted")

    assert (failed["slot"], failed["restart_in"]) == ("llm1", 0.1)
    assert "exited with code -9" in failed["detail"]
    assert (restarted["slot"], restarted["attempt"]) == ("llm1", 1)
    assert rig.slot_states()["llm1"] == "ready" and rig.slots.get("llm1").backend.pid != old_pid
    assert rig.arbiter.mode == "inference" and not rig.arbiter.switching


async def test_a_crash_loop_backs_off(rig_factory: RigFactory) -> None:
    rig = await rig_factory(arbiter_cfg=FAST_RESTART)
    sub = rig.watch()
    delays = []
    for _ in range(3):
        kill(rig, "llm1")
        delays.append((await next_event(rig, sub, "slot_failed"))["restart_in"])
        await next_event(rig, sub, "slot_restarted")

    assert delays == [0.1, 0.2, 0.4]


async def test_the_img_slot_that_dies_is_restarted_too(rig_factory: RigFactory) -> None:
    rig = await rig_factory(arbiter_cfg=FAST_RESTART)
    await rig.switch("generation")
    sub = rig.watch()
    kill(rig, "comfy")

    failed = await next_event(rig, sub, "slot_failed")
    back = await next_event(rig, sub, "img_slot_restarted")

    assert failed["slot"] == "comfy" and back["slot"] == "comfy"
    assert rig.slot_states()["comfy"] == "ready" and rig.arbiter.mode == "generation"


async def test_a_dead_llm_slot_is_not_restarted_in_generation_mode(rig_factory: RigFactory) -> None:
    """The GPU belongs to ComfyUI: an LLM slot found dead then is reported, not started next to it."""
    rig = await rig_factory(llm={"llm1": [], "llm2": []}, arbiter_cfg=FAST_RESTART)
    sub = rig.watch()
    await rig.arbiter.request_switch("generation")
    await rig.next_switch_end(sub)
    assert rig.slot_states()["llm1"] == "offline"

    assert rig.arbiter.should_run(rig.slots.get("llm1")) is False


async def test_switch_to_inference_while_a_saved_slot_is_dead_is_a_retry(rig_factory: RigFactory) -> None:
    rig = await rig_factory(arbiter_cfg=NO_RESTART)
    sub = rig.watch()
    kill(rig, "llm1")
    await next_event(rig, sub, "slot_failed")

    code, body = await rig.arbiter.request_switch("inference")
    end = await rig.next_switch_end(sub)

    assert (code, body) == (202, {"status": "switching", "mode": "inference"})
    assert end["type"] == "switch_finished" and rig.slot_states()["llm1"] == "ready"


async def test_a_dead_slot_stays_in_the_saved_set_across_a_switch(rig_factory: RigFactory) -> None:
    rig = await rig_factory(llm={"llm1": [], "llm2": []}, arbiter_cfg=NO_RESTART)
    sub = rig.watch()
    kill(rig, "llm2")
    await next_event(rig, sub, "slot_failed")

    await rig.switch("generation")
    assert rig.persisted()["saved_llm_slots"] == ["llm1", "llm2"]
    await rig.switch("inference")

    assert rig.slot_states() == {"llm1": "ready", "llm2": "ready", "comfy": "ready"}


# ------------------------------------------------------------------------------ a hung ComfyUI


async def test_free_failing_on_every_idle_attempt_ends_in_an_img_slot_restart(rig_factory: RigFactory) -> None:
    """An alive but broken ComfyUI (every /free fails): after hung_idle_attempts the img slot restarts."""
    rig = await rig_factory(
        img_command=lambda port: standin_command(port, "--set", "free_500=1000"),
        image={"idle_restore_minutes": 0.005}, arbiter_cfg={"hung_idle_attempts": 2},
    )  # fmt: skip
    await rig.switch("generation")
    sub = rig.watch()

    ends = [await rig.next_switch_end(sub) for _ in range(3)]

    assert [(e["type"], e["trigger"]) for e in ends] == [
        ("switch_failed", "idle"), ("switch_failed", "idle"), ("switch_finished", "hung"),
    ]  # fmt: skip
    assert "2 idle-restore attempts in a row failed" in ends[2]["warnings"][0]
    assert "img slot comfy restarted" in ends[2]["warnings"][0]
    assert rig.arbiter.mode == "inference" and rig.slot_states() == {"llm1": "ready", "comfy": "ready"}
    assert list(rig.hub.status.switchover.warnings) == ends[2]["warnings"]


async def test_comfyui_unreachable_while_its_slot_runs_is_restarted(rig_factory: RigFactory) -> None:
    rig = await rig_factory(arbiter_cfg={"hung_unreachable_minutes": 0.01})  # 0.6 s
    await rig.switch("generation")
    sub = rig.watch()
    await rig.comfy("POST", "/_standin/config", {"http_delay_seconds": 30.0})  # alive, answers nothing

    seen: list[str] = []
    end = await rig.next_switch_end(sub, seen)

    assert "img_slot_restarted" in seen
    assert (end["type"], end["trigger"], end["target"]) == ("switch_finished", "hung", "inference")
    assert "did not answer for 0.01 min" in end["warnings"][0]
    assert rig.arbiter.mode == "inference" and rig.slot_states()["llm1"] == "ready"
    await until_state(rig, "comfy", "ready")  # the new ComfyUI has no delay


async def test_a_pinned_generation_mode_is_left_alone(rig_factory: RigFactory) -> None:
    """A pin is a person holding generation mode: the hung rule waits for them (documented)."""
    rig = await rig_factory(arbiter_cfg={"hung_unreachable_minutes": 0.005})  # 0.3 s
    await rig.switch("generation", pin=True)
    await rig.comfy("POST", "/_standin/config", {"http_delay_seconds": 30.0})

    await asyncio.sleep(1.5)

    assert rig.arbiter.mode == "generation" and not rig.arbiter.switching
