"""EngineMonitor: the snapshot's engine fields follow a real ComfyUI stand-in (and its absence),
never block, and never pile probes up; plus the amdgpu sysfs GTT reader."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hal0_bridge.comfyui.errors import ComfyUnreachable
from hal0_bridge.comfyui.facade import ComfyUI
from hal0_bridge.comfyui.monitor import EngineMonitor
from hal0_bridge.config import ComfyConfig, build
from hal0_bridge.gpu.memory import GttReading, GttSource, read_gtt, sysfs_gtt
from hal0_bridge.status import Memory, Queue, StatusHub

from tests.support.comfyui_standin import ComfyStandIn

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
HANG_GUARD = 30  # bound for conditions that must come true on their own; never reached unless broken


def cfg_for(url: str, **overrides: float) -> ComfyConfig:
    settings = {
        "connect_timeout": 0.3,
        "request_timeout": 1.0,
        "probe_interval": 0.1,
        "probe_timeout": 0.3,
        "ws_silence_timeout": 0.5,
        "history_poll_interval": 0.05,
        **overrides,
    }
    return build({"comfyui": {"url": url, **settings}}).comfyui


def graph(steps: int, seed: int = 42) -> dict[str, Any]:
    g = json.loads((CAPTURES / "prompt_request_example.json").read_text())["prompt"]
    g["3"]["inputs"].update(steps=steps, seed=seed)
    return g


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while not condition():
            await asyncio.sleep(0.01)


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@contextlib.asynccontextmanager
async def monitored(url: str, *, gtt: GttSource | None = None, **kwargs: Any) -> AsyncIterator[tuple[ComfyUI, StatusHub]]:
    hub = StatusHub()
    comfy = ComfyUI(cfg_for(url), hub, gtt=gtt, **kwargs)
    await comfy.start()
    try:
        yield comfy, hub
    finally:
        await comfy.stop()


class ProbeCount:
    """Counts the monitor's finished probe cycles (from now on) through its ``on_probe`` hook."""

    def __init__(self, monitor: EngineMonitor) -> None:
        self.value = 0
        monitor.on_probe.append(self._tick)

    def _tick(self) -> None:
        self.value += 1


@pytest.fixture
async def standin() -> AsyncIterator[ComfyStandIn]:
    async with ComfyStandIn() as server:
        yield server


def fake_sysfs(root: Path, cards: dict[str, tuple[str, str]]) -> Path:
    for card, (used, total) in cards.items():
        device = root / card / "device"
        device.mkdir(parents=True)
        (device / "mem_info_gtt_used").write_text(used + "\n")
        (device / "mem_info_gtt_total").write_text(total + "\n")
    return root


# -- engine state ---------------------------------------------------------------------------------


async def test_answering_comfyui_is_reachable_and_running(standin: ComfyStandIn) -> None:
    async with monitored(standin.url) as (_, hub):
        await until(lambda: hub.status.reachable)
        assert hub.status.engine == "running"
        assert hub.status.queue == Queue(0, 0)


async def test_absent_comfyui_is_stopped(standin: ComfyStandIn) -> None:
    async with monitored(refused_url()) as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 2)
        assert (hub.status.reachable, hub.status.engine) == (False, "stopped")


async def test_engine_follows_comfyui_stopping_and_starting_again(standin: ComfyStandIn) -> None:
    port = standin.port
    async with monitored(standin.url) as (comfy, hub):
        await until(lambda: hub.status.engine == "running" and comfy.ws.connected)
        await standin.stop()
        await until(lambda: hub.status.engine == "stopped")
        assert hub.status.reachable is False
        async with ComfyStandIn(port=port) as again:
            await until(lambda: hub.status.engine == "running")
            assert hub.status.reachable is True
            await until(lambda: comfy.ws.connected)
            assert again.counters.ws_connects == 1


async def test_render_makes_the_engine_generating_with_queue_and_progress(standin: ComfyStandIn) -> None:
    standin.settings.step_seconds = 0.03
    async with monitored(standin.url) as (comfy, hub):
        await until(lambda: comfy.ws.connected)
        render = asyncio.create_task(comfy.render(graph(steps=40)))
        await until(lambda: hub.status.progress is not None and hub.status.progress.step >= 3)
        assert hub.status.engine == "generating"
        assert hub.status.queue.running == 1
        progress = hub.status.progress
        assert progress.steps == 40 and progress.it_s is not None and progress.eta_s is not None
        await render
        await until(lambda: hub.status.engine == "running")
        assert hub.status.progress is None and hub.status.queue == Queue(0, 0)


async def test_progress_changes_are_published_to_subscribers(standin: ComfyStandIn) -> None:
    standin.settings.step_seconds = 0.05
    async with monitored(standin.url) as (comfy, hub):
        await until(lambda: comfy.ws.connected)
        steps: list[int] = []

        async def read(sub: Any) -> None:
            async for message in sub:
                if message.kind == "status" and message.data["progress"]:
                    steps.append(message.data["progress"]["step"])

        with hub.subscribe(initial=False) as sub:
            reader = asyncio.create_task(read(sub))
            await comfy.render(graph(steps=5))
            reader.cancel()
        assert steps and set(steps) <= {1, 2, 3, 4, 5} and steps == sorted(steps)


async def test_pending_prompts_show_in_the_queue(standin: ComfyStandIn) -> None:
    standin.settings.step_seconds = 0.05
    async with monitored(standin.url) as (comfy, hub):
        await until(lambda: comfy.ws.connected)
        renders = [asyncio.create_task(comfy.render(graph(steps=400, seed=s))) for s in (1, 2, 3)]
        await until(lambda: hub.status.queue == Queue(1, 2))
        assert hub.status.engine == "generating"
        for render in renders:  # cancelled renders are taken out of ComfyUI
            render.cancel()
        await asyncio.gather(*renders, return_exceptions=True)
        await until(lambda: hub.status.queue == Queue(0, 0) and hub.status.engine == "running")


async def test_starting_img_slot_reads_starting_while_comfyui_is_away() -> None:
    async with monitored(refused_url(), img_slot_state=lambda: "starting") as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 1)
        assert (hub.status.engine, hub.status.reachable) == ("starting", False)


async def test_img_slot_hook_wired_late_takes_effect() -> None:
    async with monitored(refused_url()) as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 1)
        assert hub.status.engine == "stopped"
        comfy.set_img_slot_state(lambda: "starting")
        await until(lambda: hub.status.engine == "starting")


# -- a blackholed ComfyUI -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def blackhole() -> AsyncIterator[tuple[str, dict[str, int]]]:
    """Accepts connections and never answers; counts connections open at once."""
    seen = {"open": 0, "max_open": 0, "total": 0}

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["open"] += 1
        seen["total"] += 1
        seen["max_open"] = max(seen["max_open"], seen["open"])
        with contextlib.suppress(Exception):
            while await reader.read(65536):
                pass
        seen["open"] -= 1
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


async def test_blackholed_comfyui_is_stopped_and_status_never_waits() -> None:
    async with blackhole() as (url, _), monitored(url) as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 2)
        assert (hub.status.engine, hub.status.reachable) == ("stopped", False)
        assert hub.status.to_dict()["engine"] == "stopped"  # served from memory, no I/O


async def test_probes_against_a_blackhole_never_overlap() -> None:
    async with blackhole() as (url, seen):
        hub = StatusHub()
        comfy = ComfyUI(cfg_for(url), hub)
        comfy.client.session = aiohttp.ClientSession()
        try:
            await comfy.monitor.start()  # the monitor alone: no websocket attempts to count
            probes = ProbeCount(comfy.monitor)
            await until(lambda: probes.value >= 4)
        finally:
            await comfy.monitor.stop()
            await comfy.client.session.close()
        assert seen["total"] >= 4
        assert seen["max_open"] == 1


async def test_render_against_a_blackhole_fails_unreachable() -> None:
    async with blackhole() as (url, _), monitored(url) as (comfy, _hub):
        with pytest.raises(ComfyUnreachable):
            await asyncio.wait_for(comfy.render(graph(steps=1)), HANG_GUARD)


# -- memory ---------------------------------------------------------------------------------------------


async def test_memory_comes_from_comfyui_without_sysfs(standin: ComfyStandIn) -> None:
    standin.settings.vram_total, standin.settings.vram_free = 1000, 400
    standin.settings.ram_total, standin.settings.ram_free = 5000, 1000
    async with monitored(standin.url) as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 1)
        assert hub.status.memory == Memory(600, 1000, 4000, 5000, "comfyui")


async def test_memory_prefers_sysfs_gtt(standin: ComfyStandIn, tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, {"card0": ("123", "4096")})
    async with monitored(standin.url, gtt=sysfs_gtt(root)) as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 1)
        memory = hub.status.memory
        assert (memory.gtt_used, memory.gtt_total, memory.gtt_source) == (123, 4096, "sysfs")
        assert memory.ram_total == standin.settings.ram_total


async def test_sysfs_gtt_is_shown_while_comfyui_is_away(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, {"card1": ("7", "70")})
    async with monitored(refused_url(), gtt=sysfs_gtt(root)) as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 1)
        assert hub.status.memory == Memory(7, 70, None, None, "sysfs")


async def test_unknown_memory_is_none_everywhere() -> None:
    async with monitored(refused_url()) as (comfy, hub):
        probes = ProbeCount(comfy.monitor)
        await until(lambda: probes.value >= 1)
        assert hub.status.memory == Memory()


def test_read_gtt_picks_the_card_with_the_most_gtt(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, {"card0": ("1", "100"), "card1": ("50", "9000"), "card2": ("2", "200")})
    assert read_gtt(root) == GttReading(50, 9000, "card1")


def test_read_gtt_skips_cards_without_readable_numbers(tmp_path: Path) -> None:
    root = fake_sysfs(tmp_path, {"card0": ("garbage", "100"), "card1": ("5", "")})
    (tmp_path / "card1-DP-1").mkdir()  # connectors live beside cards and have no device counters
    assert read_gtt(root) is None


def test_read_gtt_without_amdgpu_is_none(tmp_path: Path) -> None:
    assert read_gtt(tmp_path / "missing") is None
    assert read_gtt(None) is None
