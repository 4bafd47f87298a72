"""Slot backends and the slot manager, with real child processes and a `systemctl` substitute."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hal0_bridge import config as config_mod
from hal0_bridge.config import Config
from hal0_bridge.gpu.slots.base import SlotError
from hal0_bridge.gpu.slots.manager import SlotManager
from hal0_bridge.status import StatusHub

from tests.support import fake_llama

REPO = Path(__file__).resolve().parents[3]


def make_config(tmp_path: Path, slots: dict[str, dict[str, Any]]) -> Config:
    defaults = {"cwd": str(REPO), "ready_timeout": 10.0, "stop_timeout": 2.0, "probe_timeout": 0.5,
                "poll_interval": 0.2, "drain_timeout": 1.0}
    return config_mod.build(
        {
            "server": {"state_dir": str(tmp_path / "state")},
            "slots": {name: {**defaults, **s} for name, s in slots.items()},
        }
    )


def llm_slot(port: int, *flags: str, **extra: Any) -> dict[str, Any]:
    return {
        "group": "llm",
        "backend": "process",
        "command": fake_llama.command(port, *flags),
        "url": f"http://127.0.0.1:{port}",
        "ready_path": "/health",
        **extra,
    }


def idle_img_slot() -> dict[str, Any]:
    """An img slot that is never started in these tests (config needs exactly one)."""
    return {"group": "img", "backend": "process", "command": ["true"], "url": "http://127.0.0.1:9"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def managers(session: aiohttp.ClientSession) -> AsyncIterator[list[SlotManager]]:
    """Managers built by a test; stopped (children killed) at the end."""
    made: list[SlotManager] = []
    yield made
    for manager in reversed(made):
        await manager.stop()


@pytest.fixture
def manager_for(
    tmp_path: Path, session: aiohttp.ClientSession, managers: list[SlotManager]
):  # type: ignore[no-untyped-def]
    async def build(slots: dict[str, dict[str, Any]], hub: StatusHub | None = None) -> SlotManager:
        manager = SlotManager.from_config(make_config(tmp_path, slots), hub or StatusHub(), session)
        managers.append(manager)
        await manager.start()
        return manager

    return build


def calls(state: Path) -> list[str]:
    path = state / "calls"
    return path.read_text().splitlines() if path.exists() else []


def events(log: Path) -> list[str]:
    return [line.split(" ", 1)[1] for line in log.read_text().splitlines()] if log.exists() else []


def hub_states(hub: StatusHub) -> dict[str, str]:
    return {s.name: s.state for s in hub.status.slots}


# ------------------------------------------------------------------------------------- process


async def test_process_slot_starts_and_is_ready_in_status(manager_for) -> None:  # type: ignore[no-untyped-def]
    hub = StatusHub()
    manager = await manager_for({"llm1": llm_slot(fake_llama.free_port()), "img": idle_img_slot()}, hub)
    assert hub_states(hub) == {"llm1": "offline", "img": "offline"}

    await manager.get("llm1").start()

    assert hub_states(hub)["llm1"] == "ready"
    assert await manager.running_llm() == ["llm1"]


async def test_start_returns_only_once_health_answers(manager_for, session) -> None:  # type: ignore[no-untyped-def]
    port = fake_llama.free_port()
    manager = await manager_for({"llm1": llm_slot(port, "--load-seconds", "0.4"), "img": idle_img_slot()})

    await manager.get("llm1").start()

    async with session.get(f"http://127.0.0.1:{port}/health") as resp:
        assert resp.status == 200


async def test_slot_that_never_gets_healthy_fails_within_ready_timeout(manager_for) -> None:  # type: ignore[no-untyped-def]
    hub = StatusHub()
    slot_cfg = llm_slot(fake_llama.free_port(), "--never-healthy", ready_timeout=0.5)
    manager = await manager_for({"llm1": slot_cfg, "img": idle_img_slot()}, hub)

    with pytest.raises(SlotError, match="not ready within"):
        await manager.get("llm1").start()

    assert hub_states(hub)["llm1"] == "error"


async def test_slot_that_exits_at_once_fails_with_its_exit_code(manager_for) -> None:  # type: ignore[no-untyped-def]
    hub = StatusHub()
    manager = await manager_for(
        {"img": {**llm_slot(fake_llama.free_port(), "--exit-at-once", "3"), "group": "img"}}, hub
    )

    with pytest.raises(SlotError, match="exited before it was ready.*code 3"):
        await manager.get("img").start()

    assert hub_states(hub)["img"] == "error"
    assert hub.status.container == "exited"


async def test_stop_sends_sigterm_and_the_slot_goes_offline(manager_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hub = StatusHub()
    log = tmp_path / "llm1.events"
    manager = await manager_for({"llm1": llm_slot(fake_llama.free_port(), "--log", str(log)), "img": idle_img_slot()}, hub)
    slot = manager.get("llm1")
    await slot.start()

    await slot.stop()

    assert events(log) == ["start", "sigterm busy=0", "exit"]
    assert hub_states(hub)["llm1"] == "offline"


async def test_stop_kills_a_process_that_ignores_sigterm(manager_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "llm1.events"
    flags = ("--ignore-sigterm", "--log", str(log))
    manager = await manager_for({"llm1": llm_slot(fake_llama.free_port(), *flags, stop_timeout=0.3), "img": idle_img_slot()})
    slot = manager.get("llm1")
    await slot.start()
    pid = slot.backend.pid

    await slot.stop()

    assert events(log) == ["start", "sigterm busy=0"]  # no clean "exit": it was SIGKILLed
    assert not await slot.is_running()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_child_that_dies_is_noticed_without_waiting_for_a_poll(manager_for) -> None:  # type: ignore[no-untyped-def]
    hub = StatusHub()
    cfg = llm_slot(fake_llama.free_port(), poll_interval=3600)
    manager = await manager_for({"llm1": cfg, "img": idle_img_slot()}, hub)
    slot = manager.get("llm1")
    await slot.start()

    with hub.subscribe(initial=False) as sub:
        os.kill(slot.backend.pid, signal.SIGKILL)
        while hub_states(hub)["llm1"] != "error":
            await asyncio.wait_for(sub.get(), 10)

    assert "code -9" in (slot.error or "")


async def test_in_flight_follows_llama_slots_is_processing(manager_for, session) -> None:  # type: ignore[no-untyped-def]
    port = fake_llama.free_port()
    manager = await manager_for({"llm1": llm_slot(port), "img": idle_img_slot()})
    slot = manager.get("llm1")
    await slot.start()
    assert await slot.in_flight() == 0

    async with session.post(f"http://127.0.0.1:{port}/_fake/busy", json={"busy": True}):
        pass

    assert await slot.in_flight() == 1
    assert (await slot.drain(0.2)).idle is False


async def test_restarted_manager_adopts_the_running_child(manager_for, tmp_path, session) -> None:  # type: ignore[no-untyped-def]
    """A bridge killed with SIGKILL leaves its children; the next one must not start a second copy."""
    slots = {"llm1": llm_slot(fake_llama.free_port()), "img": idle_img_slot()}
    first = await manager_for(slots)
    await first.get("llm1").start()
    pid = first.get("llm1").backend.pid

    hub = StatusHub()
    second = await manager_for(slots, hub)

    assert second.get("llm1").backend.pid == pid
    assert hub_states(hub)["llm1"] == "ready"
    await second.get("llm1").stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_manager_stop_ends_its_child_processes(tmp_path, session) -> None:  # type: ignore[no-untyped-def]
    manager = SlotManager.from_config(
        make_config(tmp_path, {"llm1": llm_slot(fake_llama.free_port()), "img": idle_img_slot()}), StatusHub(), session
    )
    await manager.start()
    await manager.get("llm1").start()
    pid = manager.get("llm1").backend.pid

    await manager.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# ------------------------------------------------------------------------------------- systemd


def systemd_slot(group: str = "llm", **extra: Any) -> dict[str, Any]:
    return {"group": group, "backend": "systemd", **extra}


async def test_systemd_start_and_stop_run_the_exact_systemctl_commands(manager_for, systemctl) -> None:  # type: ignore[no-untyped-def]
    manager = await manager_for({"llm1": systemd_slot(), "img": systemd_slot("img", unit="comfyui.service")})
    (systemctl / "calls").unlink()
    slot = manager.get("llm1")

    await slot.start()
    await slot.stop()

    issued = [c for c in calls(systemctl) if not c.startswith("show ")]
    assert issued == ["start hal0-slot@llm1.service", "stop hal0-slot@llm1.service"]
    assert "show -p ActiveState -p SubState hal0-slot@llm1.service" in calls(systemctl)


async def test_systemd_user_slots_pass_the_user_flag(manager_for, systemctl) -> None:  # type: ignore[no-untyped-def]
    manager = await manager_for({"llm1": systemd_slot(systemd_user=True), "img": systemd_slot("img")})

    await manager.get("llm1").start()

    assert "--user start hal0-slot@llm1.service" in calls(systemctl)
    assert "--user show -p ActiveState -p SubState hal0-slot@llm1.service" in calls(systemctl)


@pytest.mark.parametrize(
    ("unit_state", "slot_state", "container"),
    [
        ("active running", "ready", "running"),
        ("activating start", "starting", "running"),
        ("deactivating stop-sigterm", "stopping", "running"),
        ("failed failed", "error", "exited"),
        ("inactive dead", "offline", "exited"),
    ],
)
async def test_systemd_unit_state_maps_to_slot_state_and_container(  # type: ignore[no-untyped-def]
    manager_for, systemctl, unit_state, slot_state, container
) -> None:
    for unit in ("hal0-slot@llm1.service", "hal0-slot@img.service"):
        (systemctl / "units" / unit).write_text(unit_state + "\n")
    hub = StatusHub()

    await manager_for({"llm1": systemd_slot(), "img": systemd_slot("img", url="http://127.0.0.1:9")}, hub)

    assert hub_states(hub)["llm1"] == slot_state
    assert hub.status.container == container


async def test_systemd_unit_that_will_not_stop_raises(manager_for, systemctl) -> None:  # type: ignore[no-untyped-def]
    manager = await manager_for({"llm1": systemd_slot(stop_timeout=0.3), "img": systemd_slot("img")})
    slot = manager.get("llm1")
    await slot.start()
    (systemctl / "units" / "hal0-slot@llm1.service.stuck").touch()

    with pytest.raises(SlotError, match="did not stop within"):
        await slot.stop()

    assert slot.state == "stopping"


async def test_systemd_start_failure_carries_systemctl_message(manager_for, systemctl) -> None:  # type: ignore[no-untyped-def]
    (systemctl / "units" / "hal0-slot@llm1.service.fail-start").touch()
    manager = await manager_for({"llm1": systemd_slot(), "img": systemd_slot("img")})

    with pytest.raises(SlotError, match="control process exited with error code"):
        await manager.get("llm1").start()

    assert manager.get("llm1").state == "error"


# ----------------------------------------------------------------------------------- readiness


async def test_img_readiness_needs_system_stats_with_python_version(manager_for, systemctl) -> None:  # type: ignore[no-untyped-def]
    """ComfyUI's port can answer before it is usable: only a real /system_stats body counts."""
    body: dict[str, Any] = {}

    async def system_stats(_: web.Request) -> web.Response:
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/system_stats", system_stats)
    runner = web.AppRunner(app)
    await runner.setup()
    port = fake_llama.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        (systemctl / "units" / "hal0-slot@img.service").write_text("active running\n")
        manager = await manager_for({"img": systemd_slot("img", url=f"http://127.0.0.1:{port}")})
        slot = manager.get("img")
        assert slot.state == "starting"

        body.update({"system": {"python_version": "3.11.7"}})

        assert await slot.refresh() == "ready"
    finally:
        await runner.cleanup()


async def test_readiness_reads_a_systemd_units_state_at_most_once_a_second(manager_for, systemctl) -> None:  # type: ignore[no-untyped-def]
    """A unit that takes ~2 s to become active: `systemctl show` forks stay at about one a second
    (the HTTP probe may poll fast; polling the unit at the probe's pace forked ~18 times a second)."""
    unit = systemctl / "units" / "hal0-slot@llm1.service"
    (systemctl / "units" / "hal0-slot@llm1.service.start-as").write_text("activating start\n")
    manager = await manager_for(
        {"llm1": systemd_slot(poll_interval=60.0), "img": systemd_slot("img", poll_interval=60.0)}
    )
    slot = manager.get("llm1")
    await slot.launch()
    (systemctl / "calls").unlink()

    async def activate_later() -> None:
        await asyncio.sleep(2.0)
        unit.write_text("active running\n")

    flip = asyncio.create_task(activate_later())
    started = asyncio.get_running_loop().time()
    await slot.wait_until_ready()
    waited = asyncio.get_running_loop().time() - started
    await flip

    shows = [c for c in calls(systemctl) if c.startswith("show ")]
    assert 2.0 <= waited < 3.5
    assert 2 <= len(shows) <= 5  # once at the start, then about once a second


CHATTY = (
    "import sys, time\n"
    "while True:\n"
    "    sys.stdout.write('x' * 4095 + '\\n'); sys.stdout.flush(); time.sleep(0.01)\n"
)  # ~400 kB/s into the slot's log


async def test_a_chatty_process_slots_log_is_rotated_and_bounded(manager_for, tmp_path) -> None:  # type: ignore[no-untyped-def]
    chatty = {"group": "llm", "backend": "process", "command": [sys.executable, "-c", CHATTY],
              "log_max_bytes": 64 * 1024, "log_backups": 2, "poll_interval": 0.1}  # fmt: skip
    manager = await manager_for({"llm1": chatty, "img": idle_img_slot()})
    slot = manager.get("llm1")
    await slot.start()
    log = tmp_path / "state" / "slots" / "llm1.log"

    await asyncio.sleep(1.5)  # ~600 kB written: several rotations
    sizes = {p.name: p.stat().st_size for p in log.parent.glob("llm1.log*")}
    grown_from = log.stat().st_size
    await asyncio.sleep(0.05)

    assert set(sizes) == {"llm1.log", "llm1.log.1", "llm1.log.2"}  # a few generations, no more
    assert all(size <= 64 * 1024 + 100 * 1024 for size in sizes.values())  # the bound + one poll's output
    assert await slot.is_running() and log.stat().st_size != grown_from  # the child writes on, undisturbed


async def test_a_slot_without_a_url_cannot_be_seen_so_its_drain_waits_it_out(manager_for) -> None:  # type: ignore[no-untyped-def]
    sleeper = {"group": "llm", "backend": "process", "command": ["sleep", "60"]}
    manager = await manager_for({"blind": sleeper, "told": {**sleeper, "inflight": "none"}, "img": idle_img_slot()})
    loop = asyncio.get_running_loop()

    started = loop.time()
    blind = await manager.get("blind").drain(0.3)
    waited = loop.time() - started
    told = await manager.get("told").drain(30.0)

    assert (blind.idle, blind.blind) == (False, "no url to ask") and waited >= 0.3
    assert (told.idle, told.blind) == (True, None)  # inflight = "none": the user's word, no wait
