"""The release phase of a switch to inference: LLM slots start only once ComfyUI has really let go.

ComfyUI applies ``POST /free`` between prompts (main.py ``prompt_worker``), so a forced switch during an
uninterruptible VAE decode must wait for the prompt's end; with amdgpu sysfs (the stand-in's fake one)
the wait goes on until GTT use has fallen. Real processes: the ComfyUI stand-in as the img slot, fake
llama.cpp servers as LLM slots, the daemon's own ComfyUI handle (websocket included) as the observer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hal0_bridge.gpu.memory import sysfs_gtt
from hal0_bridge.status import Subscription

from tests.daemon.gpu.test_arbiter import HANG_GUARD, Rig, RigFactory, standin_command

GIB = 1024**3
MODEL_BYTES = 8 * GIB
VRAM = {"vram_total": 32 * GIB, "vram_free": 31 * GIB}  # 1 GiB in use before ComfyUI loads anything


def standin_with(**settings: Any) -> Callable[[int], list[str]]:
    flags = [arg for name, value in settings.items() for arg in ("--set", f"{name}={value}")]
    return lambda port: standin_command(port, *flags)


def gtt_used(drm: Path) -> int:
    return int((drm / "card0" / "device" / "mem_info_gtt_used").read_text())


async def llm_start_moment(sub: Subscription, slot: str = "llm1") -> float:
    """time.time() when the status first shows ``slot`` leaving ``offline`` (the arbiter launched it)."""
    while True:
        msg = await asyncio.wait_for(sub.get(), HANG_GUARD)
        if msg.kind == "status" and any(s["name"] == slot and s["state"] != "offline" for s in msg.data["slots"]):
            return time.time()


async def prompt_end(rig: Rig, prompt_id: str) -> float:
    """When ComfyUI recorded the prompt's end (its history messages carry epoch milliseconds)."""
    entry = (await rig.comfy("GET", f"/history/{prompt_id}"))[prompt_id]
    return max(m[1]["timestamp"] for m in entry["status"]["messages"]) / 1000


async def until_running(rig: Rig, prompt_id: str) -> None:
    async def loop() -> None:
        while [item[1] for item in (await rig.comfy("GET", "/queue"))["queue_running"]] != [prompt_id]:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), HANG_GUARD)


async def test_forced_switch_during_an_uninterruptible_decode_starts_llms_only_after_the_prompt_ends(
    rig_factory: RigFactory,
) -> None:
    rig = await rig_factory(img_command=standin_with(decode_seconds=1.5))
    await rig.switch("generation")
    prompt_id = await rig.submit_render()
    await until_running(rig, prompt_id)  # sampling takes no time here: the prompt is in its decode
    sub = rig.watch()

    code, _ = await rig.arbiter.request_switch("inference", force=True)
    started_at = await llm_start_moment(sub)
    end = await rig.next_switch_end(sub)

    assert code == 202 and end["type"] == "switch_finished" and end["warnings"] == []
    assert started_at >= await prompt_end(rig, prompt_id)  # the interrupt only landed after the decode
    assert end["phases"]["release"] >= 0.5
    assert rig.slot_states() == {"llm1": "ready", "comfy": "ready"}


async def test_release_waits_until_gtt_use_has_fallen(rig_factory: RigFactory, tmp_path: Path) -> None:
    drm = tmp_path / "drm"
    rig = await rig_factory(
        img_command=standin_with(gtt_sysfs_dir=drm, model_vram_bytes=MODEL_BYTES, unload_seconds=1.0, **VRAM),
        gtt=sysfs_gtt(drm),
    )  # fmt: skip
    await rig.switch("generation")
    prompt_id = await rig.submit_render()
    while (await rig.comfy("GET", f"/history/{prompt_id}")) == {}:
        await asyncio.sleep(0.02)
    loaded = gtt_used(drm)
    assert loaded == 1 * GIB + MODEL_BYTES
    sub = rig.watch()

    await rig.arbiter.request_switch("inference")
    await llm_start_moment(sub)
    at_llm_start = gtt_used(drm)
    end = await rig.next_switch_end(sub)

    assert end["type"] == "switch_finished" and end["warnings"] == []
    assert at_llm_start <= loaded * 0.5  # release_gtt_drop: half of what was in use when the switch began
    assert end["phases"]["release"] >= 0.4  # the stand-in unloads in 5 steps over 1 s
    assert rig.hub.status.switchover.phases == end["phases"]


async def test_gtt_that_stops_falling_short_of_the_share_ends_the_wait(rig_factory: RigFactory, tmp_path: Path) -> None:
    drm = tmp_path / "drm"
    rig = await rig_factory(
        img_command=standin_with(gtt_sysfs_dir=drm, model_vram_bytes=GIB, unload_seconds=0.3, **VRAM),
        gtt=sysfs_gtt(drm), arbiter_cfg={"release_gtt_drop": 0.9, "release_settle": 0.4},
    )  # fmt: skip
    await rig.switch("generation")
    prompt_id = await rig.submit_render()
    while (await rig.comfy("GET", f"/history/{prompt_id}")) == {}:
        await asyncio.sleep(0.02)

    end = await rig.switch("inference")

    assert end["type"] == "switch_finished" and end["warnings"] == []
    assert gtt_used(drm) == 1 * GIB  # 2 GiB -> 1 GiB is not 90 % less: it stopped falling
    assert end["phases"]["release"] >= 0.4


async def test_an_idle_comfyui_that_ran_nothing_is_released_at_once(rig_factory: RigFactory, tmp_path: Path) -> None:
    """Nothing ran since ComfyUI started: there is no memory to wait for, even with GTT readable."""
    drm = tmp_path / "drm"
    rig = await rig_factory(
        img_command=standin_with(gtt_sysfs_dir=drm, model_vram_bytes=MODEL_BYTES, **VRAM),
        gtt=sysfs_gtt(drm), arbiter_cfg={"release_settle": 5.0},
    )  # fmt: skip
    await rig.switch("generation")

    end = await rig.switch("inference")

    assert end["type"] == "switch_finished"
    assert end["phases"]["release"] < 1.0  # not the 5 s settle window


async def test_release_is_a_timed_phase_in_status_and_events(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")

    end = await rig.switch("inference")

    assert set(end["phases"]) == {"drain", "stop", "release", "start", "ready"}
    assert rig.hub.status.switchover.phases == end["phases"]
    assert rig.hub.status.to_dict()["switchover"]["phases"]["release"] == end["phases"]["release"]


async def test_comfyui_that_never_lets_go_is_restarted_and_the_switch_goes_on(rig_factory: RigFactory) -> None:
    """A GPU hang in a node: interrupt and /free are ignored. At release_timeout the img slot restarts."""
    rig = await rig_factory(img_command=standin_with(hang_class_type="VAEDecode"), arbiter_cfg={"release_timeout": 1.0})
    await rig.switch("generation")
    prompt_id = await rig.submit_render()
    await until_running(rig, prompt_id)
    comfy_pid = rig.slots.img.backend.pid
    sub = rig.watch()

    await rig.arbiter.request_switch("inference", force=True)
    seen: list[str] = []
    end = await rig.next_switch_end(sub, seen)

    assert end["type"] == "switch_finished" and rig.arbiter.mode == "inference"
    assert "img_slot_restarted" in seen
    assert len(end["warnings"]) == 1 and "was not idle within 1s" in end["warnings"][0]
    assert "img slot comfy restarted" in end["warnings"][0]
    assert list(rig.hub.status.switchover.warnings) == end["warnings"]
    assert end["phases"]["release"] >= 1.0
    assert rig.slots.img.backend.pid != comfy_pid
    assert rig.slot_states() == {"llm1": "ready", "comfy": "ready"}  # ComfyUI is back, without the hang
