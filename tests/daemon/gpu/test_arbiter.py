"""The GPU arbiter with real slot processes: fake llama.cpp servers and the ComfyUI stand-in.

The rig here (``Rig``, ``rig_factory``) is shared with test_arbiter_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hal0_bridge import config as config_mod
from hal0_bridge.comfyui.facade import ComfyUI
from hal0_bridge.config import Config
from hal0_bridge.errors import ApiError
from hal0_bridge.gpu.arbiter import Arbiter
from hal0_bridge.gpu.engine import ComfyEngineControl
from hal0_bridge.gpu.memory import GttSource
from hal0_bridge.gpu.slots.manager import SlotManager
from hal0_bridge.status import StatusHub, Subscription

from tests.support import fake_llama

REPO = Path(__file__).resolve().parents[3]
CAPTURES = REPO / "tests" / "captures"
HANG_GUARD = 30.0  # a broken switch must fail the test, not hang it; never a speed assertion


def standin_command(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "tests.support.comfyui_standin", "--host", "127.0.0.1", "--port", str(port), *flags]


@dataclass
class Rig:
    config: Config
    hub: StatusHub
    slots: SlotManager
    arbiter: Arbiter
    session: aiohttp.ClientSession
    ports: dict[str, int]
    logs: dict[str, Path]
    state_dir: Path
    comfyui: ComfyUI  # the daemon's own ComfyUI handle (client, websocket, monitor) the arbiter observes
    subs: list[Subscription] = field(default_factory=list)

    @property
    def comfy_url(self) -> str:
        return self.config.comfyui.url

    def url(self, slot: str) -> str:
        return f"http://127.0.0.1:{self.ports[slot]}"

    def events(self, slot: str) -> list[str]:
        log = self.logs[slot]
        return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] if log.exists() else []

    def slot_states(self) -> dict[str, str]:
        return {s.name: s.state for s in self.hub.status.slots}

    def persisted(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "arbiter.json").read_text())

    def watch(self) -> Subscription:
        sub = self.hub.subscribe(initial=False)
        self.subs.append(sub)
        return sub

    async def next_switch_end(self, sub: Subscription, seen: list[str] | None = None) -> dict[str, Any]:
        """The next switch_finished / switch_failed event on ``sub``; event types on the way go to ``seen``."""
        while True:
            msg = await asyncio.wait_for(sub.get(), HANG_GUARD)
            if msg.kind != "event":
                continue
            if seen is not None:
                seen.append(msg.data["type"])
            if msg.data["type"] in ("switch_finished", "switch_failed"):
                return msg.data

    async def settle(self) -> dict[str, Any] | None:
        """Wait for a switch in flight (e.g. the recovery switch started by ``Arbiter.start``)."""
        if not self.arbiter.switching:
            return None
        return await self.next_switch_end(self.watch())

    async def switch(self, target: str, **kwargs: Any) -> dict[str, Any]:
        """request_switch and wait for its end; returns the end event."""
        sub = self.watch()
        code, body = await self.arbiter.request_switch(target, **kwargs)  # type: ignore[arg-type]
        assert (code, body) == (202, {"status": "switching", "mode": target})
        return await self.next_switch_end(sub)

    async def comfy(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.comfy_url + path, json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json(content_type=None) if resp.content_length != 0 else None

    async def standin_counters(self) -> dict[str, Any]:
        return (await self.comfy("GET", "/_standin/state"))["counters"]

    async def fake(self, slot: str, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url(slot) + path, json=body) as resp:
            return await resp.json()

    async def submit_render(self) -> str:
        """Queue the recorded example graph on ComfyUI directly (as a user of ComfyUI's UI would)."""
        graph = json.loads((CAPTURES / "prompt_request_example.json").read_text())["prompt"]
        return (await self.comfy("POST", "/prompt", {"prompt": graph}))["prompt_id"]


RigFactory = Callable[..., Awaitable[Rig]]


def build_config(
    tmp_path: Path,
    *,
    llm: dict[str, list[str]],
    img_command: list[str] | None,
    img_port: int,
    ports: dict[str, int],
    logs: dict[str, Path],
    slot_overrides: dict[str, dict[str, Any]] | None = None,
    image: dict[str, Any] | None = None,
    comfyui: dict[str, Any] | None = None,
    arbiter: dict[str, Any] | None = None,
) -> Config:
    timeouts = {"ready_timeout": 15.0, "stop_timeout": 2.0, "drain_timeout": 2.0, "probe_timeout": 0.5,
                "poll_interval": 0.2}
    slots: dict[str, dict[str, Any]] = {}
    for name, flags in llm.items():
        slots[name] = {
            "group": "llm",
            "backend": "process",
            "command": fake_llama.command(ports[name], "--log", str(logs[name]), *flags),
            "url": f"http://127.0.0.1:{ports[name]}",
            "ready_path": "/health",
            "cwd": str(REPO),
            **timeouts,
        }
    slots["comfy"] = {
        "group": "img",
        "backend": "process",
        "command": img_command or standin_command(img_port),
        "cwd": str(REPO),
        **timeouts,
    }
    for name, extra in (slot_overrides or {}).items():
        slots[name] = {**slots.get(name, {}), **extra}
    return config_mod.build(
        {
            "server": {"state_dir": str(tmp_path / "state")},
            "comfyui": {"url": f"http://127.0.0.1:{img_port}", "request_timeout": 2.0, "connect_timeout": 1.0,
                        "probe_interval": 0.1, "probe_timeout": 0.5, **(comfyui or {})},
            "image": {"idle_restore_minutes": 0, **(image or {})},
            "arbiter": {"release_timeout": 10.0, **(arbiter or {})},
            "slots": slots,
        }
    )


@pytest.fixture
async def rig_factory(tmp_path: Path) -> AsyncIterator[RigFactory]:
    """Builds a started rig: slots adopted/polled, the chosen LLM slots running, the arbiter started."""
    made: list[Rig] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *,
        llm: dict[str, list[str]] | None = None,
        running: list[str] | None = None,
        img_command: list[str] | Callable[[int], list[str]] | None = None,
        slot_overrides: dict[str, dict[str, Any]] | None = None,
        image: dict[str, Any] | None = None,
        comfyui: dict[str, Any] | None = None,
        state: dict[str, Any] | str | None = None,
        gtt: GttSource | None = None,
        arbiter_cfg: dict[str, Any] | None = None,
    ) -> Rig:
        llm = {"llm1": []} if llm is None else llm
        ports = {name: fake_llama.free_port() for name in [*llm, "comfy"]}
        logs = {name: tmp_path / f"{name}.events" for name in llm}
        if callable(img_command):
            img_command = img_command(ports["comfy"])
        config = build_config(
            tmp_path, llm=llm, img_command=img_command, img_port=ports["comfy"], ports=ports, logs=logs,
            slot_overrides=slot_overrides, image=image, comfyui=comfyui, arbiter=arbiter_cfg,
        )  # fmt: skip
        if state is not None:
            config.server.state_dir.mkdir(parents=True, exist_ok=True)
            text = state if isinstance(state, str) else json.dumps(state)
            (config.server.state_dir / "arbiter.json").write_text(text)
        session = aiohttp.ClientSession()
        sessions.append(session)
        hub = StatusHub()
        slots = SlotManager.from_config(config, hub, session)
        comfyui_handle = ComfyUI(config.comfyui, hub, client_id="arbiter-test", gtt=gtt)
        arbiter = Arbiter(config, hub, ComfyEngineControl(comfyui_handle), slots)
        comfyui_handle.set_img_slot_state(slots.img_state)
        rig = Rig(config, hub, slots, arbiter, session, ports, logs, config.server.state_dir, comfyui_handle)
        made.append(rig)
        await comfyui_handle.start()
        await slots.start()
        to_start = list(llm) if running is None else running
        await asyncio.gather(*(slots.get(name).start() for name in to_start))
        await arbiter.start()
        return rig

    yield make
    for rig in reversed(made):
        for sub in rig.subs:
            sub.close()
        await rig.arbiter.stop()
        await rig.slots.stop()
        await rig.comfyui.stop()
    for session in sessions:
        await session.close()


# ------------------------------------------------------------------------------ switching


async def test_switch_to_generation_stops_llm_slots_and_starts_comfyui(rig_factory: RigFactory) -> None:
    rig = await rig_factory()

    end = await rig.switch("generation")

    assert end["type"] == "switch_finished"
    assert rig.arbiter.mode == "generation"
    assert rig.hub.status.mode == "generation"
    assert rig.slot_states() == {"llm1": "offline", "comfy": "ready"}
    assert rig.hub.status.container == "running"
    assert rig.events("llm1")[-2:] == ["sigterm busy=0", "exit"]


async def test_switch_back_to_inference_frees_comfyui_and_restarts_the_saved_slots(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")

    end = await rig.switch("inference")

    assert end["type"] == "switch_finished"
    assert rig.arbiter.mode == "inference"
    assert rig.slot_states() == {"llm1": "ready", "comfy": "ready"}  # ComfyUI stays up
    counters = await rig.standin_counters()
    assert counters["free_calls"] == 1
    assert counters["free_bodies"] == [{"unload_models": True, "free_memory": True}]


async def test_only_the_llm_slots_that_ran_are_restarted(rig_factory: RigFactory) -> None:
    rig = await rig_factory(llm={"llm1": [], "llm2": []}, running=["llm1"], slot_overrides={"llm2": {"autostart": False}})
    await rig.switch("generation")
    assert rig.persisted()["saved_llm_slots"] == ["llm1"]

    await rig.switch("inference")

    assert rig.slot_states() == {"llm1": "ready", "llm2": "offline", "comfy": "ready"}


async def test_first_start_runs_the_autostart_llm_slots(rig_factory: RigFactory) -> None:
    rig = await rig_factory(llm={"llm1": [], "llm2": []}, running=[], slot_overrides={"llm2": {"autostart": False}})
    end = await rig.settle()

    assert end is not None and end["trigger"] == "recovery" and end["error"] is None
    assert rig.slot_states()["llm1"] == "ready" and rig.slot_states()["llm2"] == "offline"
    assert rig.persisted()["saved_llm_slots"] == ["llm1"]


async def test_a_process_llm_slot_runs_in_inference_mode_without_being_told(rig_factory: RigFactory) -> None:
    """No saved state and no ``autostart`` key: a slot the bridge runs itself is expected to run."""
    rig = await rig_factory(running=[])
    assert rig.config.slots["llm1"].autostart is True

    end = await rig.settle()

    assert end is not None and (end["target"], end["error"]) == ("inference", None)
    assert rig.slot_states()["llm1"] == "ready"


async def test_a_systemd_llm_slot_is_not_started_unless_autostart_says_so(
    rig_factory: RigFactory, systemctl: Path
) -> None:
    rig = await rig_factory(running=[], slot_overrides={"llm1": {"backend": "systemd", "url": "", "ready_path": ""}})

    assert rig.config.slots["llm1"].autostart is False
    assert not rig.arbiter.switching and rig.persisted()["saved_llm_slots"] == []


async def test_a_slot_added_to_the_config_later_is_autostarted_once(rig_factory: RigFactory) -> None:
    """The saved state knows llm1 (stopped by choice: not in the saved set); llm2 is new to it."""
    state = {"mode": "inference", "saved_llm_slots": [], "known_llm_slots": ["llm1"]}
    rig = await rig_factory(llm={"llm1": [], "llm2": []}, running=[], state=state)

    end = await rig.settle()

    assert end is not None and end["error"] is None
    assert rig.slot_states()["llm1"] == "offline" and rig.slot_states()["llm2"] == "ready"
    assert rig.persisted()["known_llm_slots"] == ["llm1", "llm2"]
    assert rig.persisted()["saved_llm_slots"] == ["llm2"]


async def test_pin_outside_generation_mode_is_refused_and_arms_nothing(rig_factory: RigFactory) -> None:
    rig = await rig_factory()

    with pytest.raises(ApiError) as err:
        await rig.arbiter.set_pin(True)

    assert (err.value.status, err.value.code, err.value.param) == (409, "comfyui.not_generation", "pinned")
    assert rig.arbiter.pinned is False and rig.persisted().get("pinned", False) is False
    await rig.switch("generation")
    assert rig.arbiter.pinned is False  # no pin armed for a later switch
    assert await rig.arbiter.set_pin(False) is False  # unpinning is always fine


async def test_pin_during_a_switch_is_refused_not_lost_in_a_rollback(rig_factory: RigFactory) -> None:
    rig = await rig_factory(img_command=fake_llama.command(fake_llama.free_port(), "--exit-at-once", "3"))
    sub = rig.watch()
    await rig.arbiter.request_switch("generation")

    with pytest.raises(ApiError) as err:
        await rig.arbiter.set_pin(True)

    assert err.value.code == "comfyui.switch_in_progress"
    end = await rig.next_switch_end(sub)
    assert end["type"] == "switch_failed" and rig.arbiter.pinned is False


async def test_switch_is_shown_in_status_and_events_with_timed_phases(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    sub = rig.watch()

    await rig.arbiter.request_switch("generation", trigger="mqtt")
    during = rig.hub.status.switchover
    end = await rig.next_switch_end(sub)

    assert (during.active, during.target, during.trigger, during.error) == (True, "generation", "mqtt", None)
    assert end["target"] == "generation" and end["trigger"] == "mqtt" and end["error"] is None
    assert set(end["phases"]) == {"drain", "stop", "start", "ready"}
    after = rig.hub.status.switchover
    assert (after.active, after.target, after.error) == (False, "generation", None)
    assert after.finished_at is not None and after.started_at is not None
    assert after.phases == end["phases"]


async def test_switch_started_event_is_emitted(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    sub = rig.watch()

    await rig.arbiter.request_switch("generation")

    while True:
        msg = await asyncio.wait_for(sub.get(), HANG_GUARD)
        if msg.kind == "event":
            break
    assert msg.data["type"] == "switch_started"
    assert (msg.data["target"], msg.data["trigger"]) == ("generation", "api")
    await rig.next_switch_end(sub)


async def test_switch_to_the_current_mode_is_a_noop_that_still_applies_pin(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")

    result = await rig.arbiter.request_switch("generation", pin=True)

    assert result == (200, {"status": "noop", "mode": "generation"})
    assert rig.arbiter.pinned is True
    assert rig.hub.status.pinned is True
    assert rig.persisted()["pinned"] is True


async def test_switch_request_during_a_switch_is_refused(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    sub = rig.watch()
    await rig.arbiter.request_switch("generation")

    with pytest.raises(ApiError) as err:
        await rig.arbiter.request_switch("inference", force=True)

    assert err.value.code == "comfyui.switch_in_progress"
    await rig.next_switch_end(sub)


async def test_twenty_concurrent_requests_start_exactly_one_switch(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")
    sub = rig.watch()

    async def attempt() -> int:
        try:
            return (await rig.arbiter.request_switch("inference"))[0]
        except ApiError as err:
            assert err.code == "comfyui.switch_in_progress"
            return err.status

    codes = await asyncio.gather(*(attempt() for _ in range(20)))

    assert sorted(codes) == [202] + [409] * 19
    seen: list[str] = []
    await rig.next_switch_end(sub, seen)
    assert seen == ["switch_started", "switch_finished"]
    assert (await rig.standin_counters())["free_calls"] == 1


async def test_busy_comfyui_queue_refuses_inference_without_force(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")
    await rig.comfy("POST", "/_standin/config", {"step_seconds": 30.0})
    await rig.submit_render()
    await rig.submit_render()

    with pytest.raises(ApiError) as err:
        await rig.arbiter.request_switch("inference")

    assert err.value.code == "comfyui.busy"
    assert err.value.details["running"] == 1 and err.value.details["pending"] == 1
    assert rig.arbiter.mode == "generation" and not rig.arbiter.switching


async def test_force_drops_renders_before_freeing(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")
    await rig.comfy("POST", "/_standin/config", {"step_seconds": 30.0})
    await rig.submit_render()
    await rig.submit_render()

    end = await rig.switch("inference", force=True)

    assert end["type"] == "switch_finished"
    queue = await rig.comfy("GET", "/queue")
    assert queue == {"queue_running": [], "queue_pending": []}
    counters = await rig.standin_counters()
    assert counters["interrupt_calls"] >= 1 and counters["free_calls"] == 1
    assert rig.slot_states()["llm1"] == "ready"


async def test_pinned_generation_refuses_inference_unless_forced(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation", pin=True)

    with pytest.raises(ApiError) as err:
        await rig.arbiter.request_switch("inference")
    assert err.value.code == "comfyui.pinned"

    await rig.switch("inference", force=True)
    assert rig.arbiter.mode == "inference"
    assert rig.arbiter.pinned is False


async def test_drain_waits_for_llm_work_before_stopping(rig_factory: RigFactory) -> None:
    rig = await rig_factory(slot_overrides={"llm1": {"drain_timeout": 20.0}})
    await rig.fake("llm1", "POST", "/_fake/busy", {"busy": True})
    sub = rig.watch()
    await rig.arbiter.request_switch("generation")

    # still draining: the slot keeps running while it reports work in flight
    while (await rig.fake("llm1", "GET", "/_fake/state"))["slots_requests"] < 3:
        await asyncio.sleep(0.02)
    assert rig.events("llm1") == ["start"]
    await rig.fake("llm1", "POST", "/_fake/busy", {"busy": False})
    end = await rig.next_switch_end(sub)

    assert end["type"] == "switch_finished" and end["warnings"] == []
    assert rig.events("llm1") == ["start", "sigterm busy=0", "exit"]


# ------------------------------------------------------------------------------ image requests


async def test_image_request_starts_a_switch_with_trigger_image(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    sub = rig.watch()

    await asyncio.wait_for(rig.arbiter.ensure_generation(), HANG_GUARD)

    assert rig.arbiter.mode == "generation"
    assert rig.slot_states()["comfy"] == "ready"
    end = await rig.next_switch_end(sub)
    assert end["trigger"] == "image"


async def test_image_request_during_a_switch_waits_for_it(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    sub = rig.watch()
    await rig.arbiter.request_switch("generation")

    await asyncio.wait_for(rig.arbiter.ensure_generation(), HANG_GUARD)

    assert rig.arbiter.mode == "generation" and not rig.arbiter.switching
    seen: list[str] = []
    end = await rig.next_switch_end(sub, seen)
    assert seen == ["switch_started", "switch_finished"] and end["trigger"] == "api"
    assert not [m for m in sub._items if m.kind == "event"]  # noqa: SLF001 - no second switch


async def test_image_request_in_generation_mode_is_a_noop(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")
    sub = rig.watch()

    await rig.arbiter.ensure_generation()

    assert not any(m.kind == "event" for m in sub._items)  # noqa: SLF001


# ------------------------------------------------------------------------------ idle-restore


IDLE = {"idle_restore_minutes": 0.005}  # 0.3 s


async def test_idle_generation_mode_restores_inference_after_the_window(rig_factory: RigFactory) -> None:
    rig = await rig_factory(image=IDLE)
    await rig.switch("generation")
    assert rig.hub.status.idle_restore_at is not None
    sub = rig.watch()

    end = await rig.next_switch_end(sub)

    assert (end["type"], end["target"], end["trigger"]) == ("switch_finished", "inference", "idle")
    assert rig.arbiter.mode == "inference"
    assert rig.hub.status.idle_restore_at is None
    assert rig.slot_states()["llm1"] == "ready"


async def test_pin_holds_generation_through_the_idle_window_and_unpin_releases_it(rig_factory: RigFactory) -> None:
    rig = await rig_factory(image=IDLE)
    await rig.switch("generation", pin=True)
    assert rig.hub.status.idle_restore_at is None
    sub = rig.watch()

    await asyncio.sleep(IDLE["idle_restore_minutes"] * 60 * 2)  # two windows pass
    assert rig.arbiter.mode == "generation" and not rig.arbiter.switching

    await rig.arbiter.set_pin(False)
    assert rig.hub.status.idle_restore_at is not None
    end = await rig.next_switch_end(sub)
    assert (end["target"], end["trigger"]) == ("inference", "idle")


async def test_a_render_in_progress_holds_off_idle_restore(rig_factory: RigFactory) -> None:
    rig = await rig_factory(image=IDLE)
    await rig.switch("generation")
    sub = rig.watch()

    async with rig.arbiter.image_activity():
        assert rig.hub.status.idle_restore_at is None
        await asyncio.sleep(IDLE["idle_restore_minutes"] * 60 * 2)
        assert rig.arbiter.mode == "generation" and not rig.arbiter.switching

    assert rig.persisted()["last_image_activity"] is not None
    end = await rig.next_switch_end(sub)
    assert end["trigger"] == "idle"


async def test_busy_comfyui_queue_counts_as_image_activity(rig_factory: RigFactory) -> None:
    rig = await rig_factory(image=IDLE)
    await rig.switch("generation", pin=True)  # pinned while the direct render is set up
    await rig.comfy("POST", "/_standin/config", {"step_seconds": 30.0})
    await rig.submit_render()
    await rig.arbiter.set_pin(False)
    first_deadline = rig.hub.status.idle_restore_at
    assert first_deadline is not None

    await asyncio.sleep(IDLE["idle_restore_minutes"] * 60 * 2)

    assert rig.arbiter.mode == "generation" and not rig.arbiter.switching
    assert rig.hub.status.idle_restore_at > first_deadline  # the window restarted


# ------------------------------------------------------------------------------ state


async def test_state_is_persisted_with_mode_and_saved_slots(rig_factory: RigFactory) -> None:
    rig = await rig_factory()

    await rig.switch("generation", pin=True)

    state = rig.persisted()
    assert state["mode"] == "generation" and state["pinned"] is True
    assert state["saved_llm_slots"] == ["llm1"] and state["switching_to"] is None


# ------------------------------------------------------------------------------ routes


@pytest.fixture
async def bridge_api(tmp_path: Path, aiohttp_client: Any) -> Any:
    """The whole bridge app (create_app) with a running LLM slot and the stand-in as img slot."""
    from hal0_bridge.app import create_app
    from hal0_bridge.http.server import BRIDGE_KEY

    ports = {"llm1": fake_llama.free_port(), "comfy": fake_llama.free_port()}
    logs = {"llm1": tmp_path / "llm1.events"}
    config = build_config(
        tmp_path, llm={"llm1": []}, img_command=None, img_port=ports["comfy"], ports=ports, logs=logs,
        comfyui={"render_timeout": 20.0, "ws_silence_timeout": 1.0, "history_poll_interval": 0.1},
    )  # fmt: skip
    app = create_app(config)
    client = await aiohttp_client(app)
    bridge = app[BRIDGE_KEY]

    async def first_start_done() -> None:  # llm1 is a process slot: inference mode runs it by itself
        while bridge.arbiter.switching or bridge.slots.get("llm1").state != "ready":
            await asyncio.sleep(0.02)

    await asyncio.wait_for(first_start_done(), HANG_GUARD)
    return client


async def status_after_switch(client: Any) -> dict[str, Any]:
    async def settled() -> dict[str, Any]:
        while True:
            status = await (await client.get("/api/comfyui/status")).json()
            if not status["switchover"]["active"]:
                return status
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(settled(), HANG_GUARD)


async def test_twenty_concurrent_switchover_requests_over_http_start_one_switch(bridge_api: Any) -> None:
    responses = await asyncio.gather(
        *(bridge_api.post("/api/comfyui/switchover", json={"mode": "generation"}) for _ in range(20))
    )
    bodies = [await r.json() for r in responses]

    assert sorted(r.status for r in responses) == [202] + [409] * 19
    assert bodies.count({"status": "switching", "mode": "generation"}) == 1
    refused = [b["error"]["code"] for b in bodies if "error" in b]
    assert refused == ["comfyui.switch_in_progress"] * 19
    assert all(r.headers.get("Retry-After") for r in responses if r.status == 409)
    status = await status_after_switch(bridge_api)
    assert status["mode"] == "generation" and status["switchover"]["error"] is None


async def test_image_request_during_a_switch_over_http_waits_then_renders(bridge_api: Any) -> None:
    started = await bridge_api.post("/api/comfyui/switchover", json={"mode": "generation"})
    assert started.status == 202

    resp = await bridge_api.post(
        "/v1/images/generations", json={"prompt": "a lighthouse", "model": "sd-1.5-pruned-emaonly", "size": "64x64"}
    )

    assert resp.status == 200, await resp.text()
    assert len((await resp.json())["data"]) == 1
    status = await (await bridge_api.get("/api/comfyui/status")).json()
    assert status["mode"] == "generation"
    assert status["switchover"]["trigger"] == "api"  # the image request joined it, no second switch


async def test_status_route_shows_the_arbiter_fields(bridge_api: Any) -> None:
    resp = await bridge_api.post("/api/comfyui/switchover", json={"mode": "generation", "pin": True})
    assert resp.status == 202

    status = await status_after_switch(bridge_api)

    assert status["mode"] == "generation" and status["pinned"] is True
    assert status["idle_restore_at"] is None  # pinned (and idle-restore is off in this config)
    assert status["container"] == "running"
    assert status["slots"] == [
        {"name": "llm1", "group": "llm", "state": "offline"},
        {"name": "comfy", "group": "img", "state": "ready"},
    ]
    assert set(status["switchover"]["phases"]) == {"drain", "stop", "start", "ready"}


async def test_pinned_generation_over_http_answers_409_pinned_then_unpin_allows_the_switch(bridge_api: Any) -> None:
    await bridge_api.post("/api/comfyui/switchover", json={"mode": "generation", "pin": True})
    await status_after_switch(bridge_api)

    refused = await bridge_api.post("/api/comfyui/switchover", json={"mode": "inference"})
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "comfyui.pinned"

    unpinned = await bridge_api.post("/api/comfyui/pin", json={"pinned": False})
    assert (unpinned.status, await unpinned.json()) == (200, {"pinned": False})
    accepted = await bridge_api.post("/api/comfyui/switchover", json={"mode": "inference"})
    assert accepted.status == 202
    status = await status_after_switch(bridge_api)
    assert status["mode"] == "inference" and status["slots"][0]["state"] == "ready"
