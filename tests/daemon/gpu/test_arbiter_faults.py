"""The arbiter under faults: busy, stuck, crashing and hung slots, a failing ComfyUI, a killed daemon,
and a damaged state file. Every fault must end in a clear state — never a wedged mode or a hang."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hal0_bridge.errors import ApiError

from tests.daemon.gpu.test_arbiter import HANG_GUARD, REPO, RigFactory, standin_command
from tests.support import fake_llama

SYSTEMD_LLM = {"backend": "systemd", "url": "", "ready_path": "", "stop_timeout": 0.3}
LLM_UNIT = "hal0-slot@llm1.service"


# ------------------------------------------------------------------------------ to generation


async def test_llm_slot_busy_past_the_drain_limit_is_stopped_anyway(rig_factory: RigFactory) -> None:
    rig = await rig_factory(slot_overrides={"llm1": {"drain_timeout": 0.3}})
    await rig.fake("llm1", "POST", "/_fake/busy", {"busy": True})

    end = await rig.switch("generation")

    assert end["type"] == "switch_finished"
    assert end["warnings"] == ["llm1: still busy after 0.3s drain; stopped anyway"]
    assert rig.events("llm1") == ["start", "sigterm busy=1", "exit"]
    assert rig.arbiter.mode == "generation"


async def test_llm_process_ignoring_sigterm_is_killed_and_the_switch_goes_on(rig_factory: RigFactory) -> None:
    rig = await rig_factory(llm={"llm1": ["--ignore-sigterm"]}, slot_overrides={"llm1": {"stop_timeout": 0.3}})

    end = await rig.switch("generation")

    assert end["type"] == "switch_finished"
    assert rig.events("llm1") == ["start", "sigterm busy=0"]  # SIGKILL: no clean exit line
    assert rig.slot_states()["llm1"] == "offline"


async def test_llm_slot_that_will_not_stop_rolls_back_to_inference(rig_factory: RigFactory, systemctl: Path) -> None:
    rig = await rig_factory(slot_overrides={"llm1": SYSTEMD_LLM})
    (systemctl / "units" / f"{LLM_UNIT}.stuck").touch()

    end = await rig.switch("generation")

    assert end["type"] == "switch_failed"
    assert "LLM slot will not stop" in end["error"] and "did not stop within 0.3s" in end["error"]
    assert rig.arbiter.mode == "inference"
    assert rig.hub.status.switchover.error == end["error"]
    assert rig.hub.status.container == "absent"  # ComfyUI was never started
    calls = (systemctl / "calls").read_text().splitlines()
    assert [c for c in calls if not c.startswith("show")] == [f"start {LLM_UNIT}", f"stop {LLM_UNIT}", f"start {LLM_UNIT}"]


async def test_img_slot_that_exits_at_once_rolls_back_and_restarts_the_llm_slots(rig_factory: RigFactory) -> None:
    rig = await rig_factory(img_command=fake_llama.command(fake_llama.free_port(), "--exit-at-once", "3"))

    end = await rig.switch("generation")

    assert end["type"] == "switch_failed"
    assert "ComfyUI not ready" in end["error"] and "exited before it was ready (exited with code 3)" in end["error"]
    assert rig.arbiter.mode == "inference" and rig.hub.status.mode == "inference"
    assert rig.events("llm1") == ["start", "sigterm busy=0", "exit", "start"]
    assert rig.slot_states() == {"llm1": "ready", "comfy": "error"}
    assert rig.persisted()["mode"] == "inference" and rig.persisted()["switching_to"] is None


async def test_img_slot_that_never_gets_ready_is_stopped_and_rolled_back(rig_factory: RigFactory) -> None:
    # a process that listens but never serves /system_stats: the port answers, ComfyUI does not
    rig = await rig_factory(img_command=fake_llama.command, slot_overrides={"comfy": {"ready_timeout": 0.5}})

    end = await rig.switch("generation")

    assert end["type"] == "switch_failed"
    assert "slot comfy not ready within 0.5s" in end["error"]
    assert rig.hub.status.container == "exited"  # we started it, it never worked: stopped again
    assert rig.slot_states()["llm1"] == "ready"
    assert rig.arbiter.mode == "inference"


async def test_image_request_fails_with_the_switch_error_instead_of_hanging(rig_factory: RigFactory) -> None:
    rig = await rig_factory(img_command=fake_llama.command(fake_llama.free_port(), "--exit-at-once", "3"))

    with pytest.raises(ApiError) as err:
        await asyncio.wait_for(rig.arbiter.ensure_generation(), HANG_GUARD)

    assert err.value.code == "comfyui.switch_failed" and err.value.status == 503
    assert "exited with code 3" in err.value.message
    assert rig.arbiter.mode == "inference" and not rig.arbiter.switching


# ------------------------------------------------------------------------------ to inference


async def test_free_failing_keeps_generation_and_a_retry_completes(rig_factory: RigFactory) -> None:
    rig = await rig_factory(comfyui={"request_timeout": 0.3})
    await rig.switch("generation")
    await rig.comfy("POST", "/_standin/config", {"http_delay_seconds": 1.0})  # ComfyUI hangs

    end = await rig.switch("inference")

    assert end["type"] == "switch_failed" and "ComfyUI /free failed" in end["error"]
    assert rig.arbiter.mode == "generation"
    assert rig.slot_states()["llm1"] == "offline"  # never started next to a ComfyUI holding memory
    await rig.comfy("POST", "/_standin/config", {"http_delay_seconds": 0.0})

    retry = await rig.switch("inference")

    assert retry["type"] == "switch_finished"
    assert rig.arbiter.mode == "inference" and rig.slot_states()["llm1"] == "ready"


async def test_free_answering_500_keeps_generation_and_a_retry_completes(rig_factory: RigFactory) -> None:
    rig = await rig_factory()
    await rig.switch("generation")
    await rig.comfy("POST", "/_standin/config", {"free_500": 1})  # ComfyUI's handler raises once

    end = await rig.switch("inference")

    assert end["type"] == "switch_failed" and "ComfyUI /free failed" in end["error"]
    assert rig.arbiter.mode == "generation"
    assert rig.slot_states()["llm1"] == "offline"

    retry = await rig.switch("inference")

    assert retry["type"] == "switch_finished"
    assert rig.arbiter.mode == "inference" and rig.slot_states()["llm1"] == "ready"
    assert (await rig.standin_counters())["free_calls"] == 2


async def test_llm_slot_failing_to_restart_leaves_a_state_a_retry_completes(
    rig_factory: RigFactory, systemctl: Path
) -> None:
    rig = await rig_factory(slot_overrides={"llm1": SYSTEMD_LLM})
    await rig.switch("generation")
    (systemctl / "units" / f"{LLM_UNIT}.fail-start").touch()

    end = await rig.switch("inference")

    assert end["type"] == "switch_failed" and "LLM slot did not start" in end["error"]
    assert rig.arbiter.mode == "generation" and rig.persisted()["incomplete"] is True
    (systemctl / "units" / f"{LLM_UNIT}.fail-start").unlink()

    retry = await rig.switch("inference")  # not a "noop": the mode was never completed

    assert retry["type"] == "switch_finished"
    assert rig.arbiter.mode == "inference" and rig.slot_states()["llm1"] == "ready"
    assert rig.persisted()["incomplete"] is False


# ------------------------------------------------------------------------------ state file


NO_AUTOSTART = {"llm1": {"autostart": False}}


async def test_missing_state_file_starts_in_inference_mode(rig_factory: RigFactory) -> None:
    rig = await rig_factory(running=[], slot_overrides=NO_AUTOSTART)

    assert (rig.arbiter.mode, rig.arbiter.pinned, rig.arbiter.switching) == ("inference", False, False)
    assert rig.hub.status.mode == "inference"


async def test_corrupt_state_file_starts_in_inference_mode_and_is_replaced(rig_factory: RigFactory) -> None:
    rig = await rig_factory(running=[], state='{"mode": "generation", "pinned": tru', slot_overrides=NO_AUTOSTART)

    assert (rig.arbiter.mode, rig.arbiter.pinned, rig.arbiter.switching) == ("inference", False, False)
    assert rig.persisted()["mode"] == "inference"


async def test_corrupt_state_file_is_no_saved_state_for_autostart(rig_factory: RigFactory) -> None:
    rig = await rig_factory(running=[], state='{"mode": "generation", "pinned": tru')

    end = await rig.settle()

    assert end is not None and end["target"] == "inference" and rig.slot_states()["llm1"] == "ready"


async def test_state_file_with_unknown_mode_is_treated_as_corrupt(rig_factory: RigFactory) -> None:
    rig = await rig_factory(running=[], state={"mode": "turbo", "pinned": True})

    assert (rig.arbiter.mode, rig.arbiter.pinned) == ("inference", False)


async def test_persisted_generation_mode_and_pin_survive_a_restart(rig_factory: RigFactory) -> None:
    rig = await rig_factory(running=[], state={"mode": "generation", "pinned": True, "saved_llm_slots": ["llm1"]})

    assert (rig.arbiter.mode, rig.arbiter.pinned) == ("generation", True)
    end = await rig.settle()  # the img slot is not running yet: generation mode brings it up
    assert end is not None and end["trigger"] == "recovery" and end["error"] is None
    assert rig.slot_states() == {"llm1": "offline", "comfy": "ready"}
    assert rig.arbiter.pinned is True


async def test_restart_in_generation_mode_stops_llm_slots_found_running(rig_factory: RigFactory) -> None:
    """E.g. LLM units enabled at boot while the persisted mode gives the GPU to ComfyUI."""
    rig = await rig_factory(state={"mode": "generation", "saved_llm_slots": []})

    end = await rig.settle()

    assert end is not None and (end["target"], end["trigger"]) == ("generation", "recovery")
    assert rig.slot_states() == {"llm1": "offline", "comfy": "ready"}
    assert rig.persisted()["saved_llm_slots"] == ["llm1"]  # and they come back with inference


async def test_restart_in_inference_mode_brings_back_saved_slots_that_are_down(rig_factory: RigFactory) -> None:
    rig = await rig_factory(running=[], state={"mode": "inference", "saved_llm_slots": ["llm1"]})

    end = await rig.settle()

    assert end is not None and (end["target"], end["trigger"]) == ("inference", "recovery")
    assert rig.slot_states()["llm1"] == "ready"


async def test_interrupted_switch_in_the_state_file_is_finished_on_start(rig_factory: RigFactory) -> None:
    sub_state = {"mode": "generation", "switching_to": "generation", "saved_llm_slots": ["llm1"]}
    rig = await rig_factory(state=sub_state)  # llm1 running, as if we died before stopping it

    await rig.settle()

    assert rig.hub.status.switchover.trigger == "recovery" and rig.hub.status.switchover.error is None
    assert rig.arbiter.mode == "generation"
    assert rig.slot_states() == {"llm1": "offline", "comfy": "ready"}
    assert rig.persisted()["switching_to"] is None and rig.persisted()["saved_llm_slots"] == ["llm1"]


# ------------------------------------------------------------------------------ SIGKILL


def daemon_config(tmp_path: Path, ports: dict[str, int]) -> Path:
    timeouts = 'ready_timeout = 20.0\nstop_timeout = 2.0\nprobe_timeout = 0.5\npoll_interval = 0.2\n'
    text = f"""
[server]
port = {ports["api"]}
state_dir = "{tmp_path / "state"}"
[comfyui]
url = "http://127.0.0.1:{ports["comfy"]}"
probe_interval = 0.2
[image]
idle_restore_minutes = 0
[slots.llm1]
group = "llm"
backend = "process"
command = {json.dumps(fake_llama.command(ports["llm1"], "--log", str(tmp_path / "llm1.events")))}
url = "http://127.0.0.1:{ports["llm1"]}"
ready_path = "/health"
cwd = "{REPO}"
{timeouts}
[slots.comfy]
group = "img"
backend = "process"
command = {json.dumps(standin_command(ports["comfy"], "--startup-delay", "2"))}
cwd = "{REPO}"
{timeouts}
"""
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


class Daemon:
    """``python -m hal0_bridge --config FILE`` as a real process."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hal0_bridge", "--config", str(self.config), "--log-level", "DEBUG",
                cwd=REPO, stdout=log, stderr=log,
            )  # fmt: skip
        while True:
            try:
                await self.status(session)
                return
            except aiohttp.ClientError:
                assert self.proc.returncode is None, self.log.read_text()
                await asyncio.sleep(0.05)

    async def status(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"http://127.0.0.1:{self.port}/api/comfyui/status") as resp:
            return await resp.json()

    async def post(self, session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, Any]:
        async with session.post(f"http://127.0.0.1:{self.port}{path}", json=body) as resp:
            return resp.status, await resp.json()

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_daemon_sigkilled_mid_switch_recovers_from_the_state_file(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    ports = {name: fake_llama.free_port() for name in ("api", "comfy", "llm1")}
    config = daemon_config(tmp_path, ports)
    run_dir = tmp_path / "state" / "slots"
    run_dir.mkdir(parents=True)
    # llm1 already runs, started by an earlier bridge (pid file), so the switch has something to save
    llm_argv = fake_llama.command(ports["llm1"], "--log", str(tmp_path / "llm1.events"))
    llm = await asyncio.create_subprocess_exec(*llm_argv, cwd=REPO, start_new_session=True,
                                               stdout=asyncio.subprocess.DEVNULL)  # fmt: skip
    (run_dir / "llm1.pid").write_text(json.dumps({"pid": llm.pid, "argv": llm_argv}))
    first = Daemon(config, ports["api"], tmp_path / "daemon1.log")
    second = Daemon(config, ports["api"], tmp_path / "daemon2.log")
    try:
        await first.start(session)
        while (await first.status(session))["slots"][0]["state"] != "ready":
            await asyncio.sleep(0.05)

        assert await first.post(session, "/api/comfyui/switchover", {"mode": "generation"}) == (
            202, {"status": "switching", "mode": "generation"},
        )  # fmt: skip
        # wait until llm1 is stopped and the (slow-starting) img slot is being waited for, then SIGKILL
        while "exit" not in (tmp_path / "llm1.events").read_text() or not (run_dir / "comfy.pid").exists():
            await asyncio.sleep(0.02)
        await first.stop(signal.SIGKILL)
        state = json.loads((tmp_path / "state" / "arbiter.json").read_text())
        assert state["switching_to"] == "generation" and state["saved_llm_slots"] == ["llm1"]
        comfy_pid = json.loads((run_dir / "comfy.pid").read_text())["pid"]

        await second.start(session)
        status = await second.status(session)
        while status["switchover"]["active"] or status["switchover"]["trigger"] != "recovery":
            await asyncio.sleep(0.05)
            status = await second.status(session)

        assert status["mode"] == "generation" and status["switchover"]["error"] is None
        assert {s["name"]: s["state"] for s in status["slots"]} == {"llm1": "offline", "comfy": "ready"}
        assert json.loads((run_dir / "comfy.pid").read_text())["pid"] == comfy_pid  # adopted, not doubled
        assert json.loads((tmp_path / "state" / "arbiter.json").read_text())["switching_to"] is None
        # not wedged: the next switch works
        assert await second.post(session, "/api/comfyui/switchover", {"mode": "inference"}) == (
            202, {"status": "switching", "mode": "inference"},
        )  # fmt: skip
        while (status := await second.status(session))["switchover"]["active"]:
            await asyncio.sleep(0.05)
        assert status["mode"] == "inference" and status["switchover"]["error"] is None
        assert {s["name"]: s["state"] for s in status["slots"]} == {"llm1": "ready", "comfy": "ready"}
    finally:
        await first.stop(signal.SIGKILL)
        await second.stop()
        for pidfile in run_dir.glob("*.pid"):
            _kill_group(json.loads(pidfile.read_text())["pid"])
        _kill_group(llm.pid)
        await llm.wait()
