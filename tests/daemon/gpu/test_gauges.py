"""Recorder-friendly gauges: resolution, rate limit of drift, real changes at once; and what that does
to a day of GTT readings and to the status snapshot the bridge publishes (SSE, MQTT, HA)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from hal0_bridge.comfyui.facade import ComfyUI
from hal0_bridge.config import build
from hal0_bridge.gpu.gauges import Deadband
from hal0_bridge.gpu.memory import GIB, MemoryFilter, sysfs_gtt
from hal0_bridge.status import Memory, StatusHub

MIB = 1024**2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_reading_is_published_rounded_to_the_step() -> None:
    band = Deadband(10.0, 60.0, clock=Clock())

    assert band(1234.0) == 1230.0


def test_drift_below_one_step_is_published_at_most_every_min_interval() -> None:
    clock = Clock()
    band = Deadband(10.0, 60.0, clock=clock)
    band(1230.0)

    clock.now = 30.0
    assert band(1237.0) == 1230.0  # rounds to 1240, but only 30 s passed
    clock.now = 61.0
    assert band(1237.0) == 1240.0
    clock.now = 200.0
    assert band(1242.0) == 1240.0  # rounds to what is published: nothing to say


def test_a_change_of_a_whole_step_goes_out_at_once() -> None:
    clock = Clock()
    band = Deadband(10.0, 60.0, clock=clock)
    band(1230.0)

    clock.now = 1.0

    assert band(1241.0) == 1240.0


def test_appearing_and_disappearing_readings_go_out_at_once() -> None:
    clock = Clock()
    band = Deadband(10.0, 60.0, clock=clock)

    assert band(None) is None
    clock.now = 1.0
    assert band(55.0) == 60.0
    clock.now = 2.0
    assert band(None) is None


def test_a_non_positive_step_is_refused() -> None:
    with pytest.raises(ValueError):
        Deadband(0.0, 60.0)


def _day_of_gtt(jitter_mib: int, seed: int = 15) -> list[tuple[float, int]]:
    """A day of probes every 2 s: a GPU whose GTT jitters by up to ``jitter_mib``, and 24 renders that
    load ~6 GiB of models for 5 minutes each."""
    rng = random.Random(seed)
    readings = []
    for i in range(43_200):
        t = i * 2.0
        in_render = (t % 3600) < 300
        base = 2 * GIB + (6 * GIB if in_render else 0)
        readings.append((t, base + rng.randint(-jitter_mib * MIB, jitter_mib * MIB)))
    return readings


def _published(readings: list[tuple[float, int]], memory_filter: MemoryFilter | None, clock: Clock) -> int:
    """How many times the published gauge changes (= status pushes, MQTT messages, recorder rows)."""
    changes, last = 0, None
    for t, used in readings:
        clock.now = t
        memory = Memory(gtt_used=used, gtt_total=96 * GIB, gtt_source="sysfs")
        value = (memory_filter(memory) if memory_filter else memory).gtt_used
        if value != last:
            changes, last = changes + 1, value
    return changes


# +-8 MiB of noise spans more than a 10.24 MiB step, so some of it counts as real change: a host that
# noisy wants a larger memory_step_gib
@pytest.mark.parametrize(("jitter_mib", "at_most"), [(4, 60), (8, 3_500)])
def test_a_day_of_gtt_readings_goes_from_one_row_per_probe_to_a_few(jitter_mib: int, at_most: int) -> None:
    readings = _day_of_gtt(jitter_mib)
    clock = Clock()

    before = _published(readings, None, clock)
    after = _published(readings, MemoryFilter(0.01, 60.0, clock=clock), clock)

    assert before > 43_000  # every probe is a change
    # each render start and end goes out at once; drift (0.01 GiB = 10.24 MiB steps) at most once a minute
    assert after <= at_most
    print(f"GTT gauge changes per day, jitter +-{jitter_mib} MiB: {before} raw, {after} with 0.01 GiB / 60 s")


async def test_the_status_snapshot_holds_still_while_gtt_only_jitters(tmp_path: Path) -> None:
    """The real engine monitor over a sysfs tree whose GTT moves by a MiB between probes."""
    device = tmp_path / "drm" / "card0" / "device"
    device.mkdir(parents=True)
    (device / "mem_info_gtt_total").write_text(str(96 * GIB))
    cfg = build({"comfyui": {"url": "http://127.0.0.1:9", "probe_interval": 0.02, "probe_timeout": 0.2}}).comfyui

    async def count_changes(memory_filter: MemoryFilter | None) -> int:
        hub = StatusHub()
        comfy = ComfyUI(cfg, hub, gtt=sysfs_gtt(tmp_path / "drm"), memory_filter=memory_filter)
        probes = 0

        def jitter() -> None:
            nonlocal probes
            probes += 1
            (device / "mem_info_gtt_used").write_text(str(2 * GIB + (probes % 2) * MIB))

        jitter()
        comfy.monitor.on_probe.append(jitter)
        with hub.subscribe(initial=False) as feed:
            await comfy.start()
            changes = 0
            try:
                async with asyncio.timeout(30):
                    while probes < 40:
                        await asyncio.sleep(0.01)
                        while feed._items:
                            message = await feed.get()
                            changes += message.kind == "status"
            finally:
                await comfy.stop()
        return changes

    raw = await count_changes(None)
    filtered = await count_changes(MemoryFilter(0.01, 60.0))

    assert raw >= 20  # (coalesced by the feed, still about one per probe)
    assert filtered <= 2  # the first reading (and the engine settling), then nothing
