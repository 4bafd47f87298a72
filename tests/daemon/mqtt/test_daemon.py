"""MQTT end to end: the real daemon (``python -m hal0_bridge``) with process slots and a real broker.

The LLM slot is ``tests.support.fake_llama``, the img slot ``tests.support.comfyui_standin``; the
broker requires a password (the bridge and the watching client have their own accounts). An
independent paho client drives the command topics and checks what the daemon publishes, and the
daemon's REST status and the slot processes confirm that the GPU really changed hands.
"""

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
from hal0_bridge.mqtt.topics import Topics

from tests.support import fake_llama
from tests.support.mosquitto import Mosquitto, MqttProbe, free_port, have_mosquitto

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")

REPO = Path(__file__).resolve().parents[3]
NODE = "e2e"
T = Topics("hal0", "homeassistant", NODE)
USERS = {"bridge": "bridge-pw", "watcher": "watcher-pw"}
START_TIMEOUT = 30.0  # the daemon process answering HTTP
SWITCH_TIMEOUT = 30.0  # a whole switchover with real child processes
STOP_TIMEOUT = 10.0


def _toml(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, booleans and lists are valid TOML values


def write_config(path: Path, *, broker: Mosquitto, http_port: int, llm_port: int, comfy_port: int, state: Path) -> None:
    comfy_url = f"http://127.0.0.1:{comfy_port}"
    slot_common = {"backend": "process", "cwd": str(REPO), "ready_timeout": 20.0, "stop_timeout": 3.0,
                   "drain_timeout": 1.0, "probe_timeout": 0.5, "poll_interval": 0.2}  # fmt: skip
    sections: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": http_port, "state_dir": str(state)},
        "comfyui": {"url": comfy_url, "probe_interval": 0.2, "probe_timeout": 0.5, "connect_timeout": 1.0},
        "image": {"idle_restore_minutes": 0, "cache_dir": str(state / "cache")},
        "mqtt": {"host": broker.host, "port": broker.port, "username": "bridge", "password": USERS["bridge"],
                 "node_id": NODE, "keepalive": 10},  # fmt: skip
        "slots.llm": {**slot_common, "group": "llm", "command": fake_llama.command(llm_port), "autostart": True,
                      "url": f"http://127.0.0.1:{llm_port}", "ready_path": "/health"},  # fmt: skip
        "slots.img": {**slot_common, "group": "img", "url": comfy_url,
                      "command": [sys.executable, "-m", "tests.support.comfyui_standin", "--port", str(comfy_port)]},  # fmt: skip
    }
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")


class Daemon:
    """``python -m hal0_bridge --config FILE`` as a child process, plus the slot children it starts."""

    def __init__(self, config: Path, http_port: int, state: Path, log: Path, *, comfy_port: int) -> None:
        self.config, self.http_port, self.state, self.log = config, http_port, state, log
        self.llm_pid = 0  # the LLM slot process the daemon started (autostart), once ready
        self.comfy_url = f"http://127.0.0.1:{comfy_port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.url = f"http://127.0.0.1:{http_port}"

    async def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "hal0_bridge", "--config", str(self.config),
                cwd=REPO, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            deadline = asyncio.get_running_loop().time() + START_TIMEOUT
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"daemon exited ({self.proc.returncode}):\n{self.log.read_text()}")
                try:
                    async with session.get(f"{self.url}/api/comfyui/status") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"daemon did not answer:\n{self.log.read_text()}")
                await asyncio.sleep(0.1)

    async def status(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/api/comfyui/status") as resp:
            return await resp.json()

    async def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)

    def slot_pids(self) -> dict[str, int]:
        pids = {}
        for pidfile in (self.state / "slots").glob("*.pid"):
            try:
                pids[pidfile.stem] = int(json.loads(pidfile.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                pass
        return pids

    async def cleanup(self) -> None:
        """Stop the daemon; then end slot children it left (it leaves them on SIGKILL by design)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        for pid in self.slot_pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def wait_online(broker: Mosquitto) -> None:
    """Until the daemon is on the broker: it subscribes before it publishes "online" (same connection)."""
    watcher = await MqttProbe(broker, username="watcher", password=USERS["watcher"]).connect(T.availability)
    try:
        await watcher.wait_for(T.availability, lambda m: m.text == "online", timeout=START_TIMEOUT)
    finally:
        watcher.close()


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    with Mosquitto(tmp_path / "broker", users=USERS) as running:
        yield running


@pytest.fixture
async def probe(broker: Mosquitto) -> AsyncIterator[MqttProbe]:
    client = await MqttProbe(broker, username="watcher", password=USERS["watcher"]).connect("hal0/#")
    yield client
    client.close()


@pytest.fixture
async def daemon(tmp_path: Path, broker: Mosquitto) -> AsyncIterator[Daemon]:
    """The daemon in inference mode with its LLM slot (autostart) up and holding the GPU."""
    state = tmp_path / "state"
    http_port, llm_port, comfy_port = free_port(), free_port(), free_port()
    config = tmp_path / "bridge.toml"
    write_config(config, broker=broker, http_port=http_port, llm_port=llm_port, comfy_port=comfy_port, state=state)
    running = Daemon(config, http_port, state, tmp_path / "daemon.log", comfy_port=comfy_port)
    try:
        await running.start()
        await wait_online(broker)
        await wait_status(running, lambda s: slot_state(s, "llm") == "ready")
        running.llm_pid = running.slot_pids()["llm"]
        yield running
    finally:
        await running.cleanup()


async def wait_status(daemon: Daemon, predicate, timeout: float = SWITCH_TIMEOUT) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await daemon.status()
        if predicate(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"status never matched: {status}")
        await asyncio.sleep(0.1)


def slot_state(status: dict[str, Any], name: str) -> str:
    return next(s["state"] for s in status["slots"] if s["name"] == name)


async def test_daemon_announces_itself_retained(daemon, probe):
    assert (await probe.wait_for(T.availability, lambda m: m.text == "online")).retain
    info = (await probe.wait_for(T.info)).json()
    assert info["node_id"] == NODE and "mqtt" in info["capabilities"]
    assert USERS["bridge"] not in json.dumps(info)
    assert (await probe.wait_for(T.mode)).text == "inference"


async def test_mode_set_hands_the_gpu_to_comfyui_and_back(daemon, probe):
    await wait_status(daemon, lambda s: slot_state(s, "llm") == "ready")
    probe.publish(T.mode_set, "generation")
    reply = (await probe.wait_for(T.response("switchover"))).json()
    assert reply["status"] == "ok" and reply["data"]["mode"] == "generation"
    await probe.wait_for(T.mode, lambda m: m.text == "generation", timeout=SWITCH_TIMEOUT)
    status = await wait_status(daemon, lambda s: not s["switchover"]["active"])
    assert status["mode"] == "generation" and status["switchover"]["error"] is None
    assert status["switchover"]["trigger"] == "mqtt"
    assert status["container"] == "running"
    assert not pid_alive(daemon.llm_pid), "the LLM slot still holds the GPU"
    events = [m.json()["type"] for m in probe.messages(T.event)]
    assert "switch_started" in events

    probe.publish(T.mode_set, json.dumps({"mode": "inference", "transaction": "back"}))
    reply = (await probe.wait_for(T.response("switchover"), lambda m: m.json()["transaction"] == "back")).json()
    assert reply["status"] == "ok"
    await probe.wait_for(T.mode, lambda m: m.text == "inference", after=1, timeout=SWITCH_TIMEOUT)
    status = await wait_status(daemon, lambda s: not s["switchover"]["active"] and slot_state(s, "llm") == "ready")
    assert status["mode"] == "inference"
    assert status["container"] == "running"  # ComfyUI stays up, only its models are freed
    async with aiohttp.ClientSession() as session, session.get(daemon.comfy_url + "/_standin/state") as resp:
        assert (await resp.json())["counters"]["free_calls"] >= 1
    assert pid_alive(daemon.slot_pids()["llm"]), "the LLM slot was not started again"
    finished = await probe.wait_for(
        T.event, lambda m: m.json()["type"] == "switch_finished" and m.json()["target"] == "inference"
    )
    assert finished.json()["trigger"] == "mqtt" and not finished.retain


async def test_mode_set_in_the_mode_already_held_is_a_noop(daemon, probe):
    probe.publish(T.mode_set, "inference")
    reply = (await probe.wait_for(T.response("switchover"))).json()
    assert reply["data"] == {"status": "noop", "mode": "inference"}


async def test_bad_mode_is_refused_with_the_rest_error_code_and_changes_nothing(daemon, probe):
    for payload in ("warp-speed", '{"mode": 1}', '{"mode": "generation", "force": "yes"}', "\x00\xff"):
        probe.publish(T.mode_set, payload)
    await probe.wait_for(T.response("switchover"), lambda m: True)
    for _ in range(50):
        if len(probe.messages(T.response("switchover"))) == 4:
            break
        await asyncio.sleep(0.05)
    replies = [m.json() for m in probe.messages(T.response("switchover"))]
    assert [r["status"] for r in replies] == ["error"] * 4
    assert {r["error"]["code"] for r in replies} == {"comfyui.invalid_mode"}
    status = await daemon.status()
    assert status["mode"] == "inference" and not status["switchover"]["active"]


async def test_pin_set_pins_generation_mode(daemon, probe):
    probe.publish(T.request("switchover"), json.dumps({"mode": "generation", "transaction": 1}))
    await probe.wait_for(T.mode, lambda m: m.text == "generation", timeout=SWITCH_TIMEOUT)
    await wait_status(daemon, lambda s: not s["switchover"]["active"])
    probe.publish(T.pin_set, "ON")
    assert (await probe.wait_for(T.response("pin"))).json()["data"] == {"pinned": True}
    pinned = await probe.wait_for(T.pinned, lambda m: m.text == "ON")
    assert (pinned.qos, pinned.retain) == (1, True)
    assert (await daemon.status())["pinned"] is True


async def test_request_status_answers_with_the_snapshot_and_the_transaction(daemon, probe):
    probe.publish(T.request("status"), json.dumps({"transaction": "s-1"}))
    reply = (await probe.wait_for(T.response("status"))).json()
    assert reply["status"] == "ok" and reply["transaction"] == "s-1"
    assert reply["data"]["mode"] == "inference"
    assert {s["name"] for s in reply["data"]["slots"]} == {"llm", "img"}


async def test_request_generate_switches_and_answers_with_an_image_url(daemon, probe):
    body = {"prompt": "a red fox", "size": "64x64", "transaction": "img-1"}
    probe.publish(T.request("generate"), json.dumps(body))
    reply = (await probe.wait_for(T.response("generate"), timeout=SWITCH_TIMEOUT * 2)).json()
    assert reply["status"] == "ok", reply
    assert reply["transaction"] == "img-1"
    url = reply["data"]["data"][0]["url"]
    async with aiohttp.ClientSession() as session:
        async with session.get(url if url.startswith("http") else daemon.url + url) as resp:
            assert resp.status == 200
            assert (await resp.read()).startswith(b"\x89PNG")
    event = await probe.wait_for(T.event, lambda m: m.json()["type"] == "image_generated")
    assert event.retain is False


async def test_request_generate_with_a_bad_body_is_refused_before_the_gpu_moves(daemon, probe):
    probe.publish(T.request("generate"), json.dumps({"prompt": "", "transaction": 9}))
    reply = (await probe.wait_for(T.response("generate"))).json()
    assert reply["error"]["code"] == "image.prompt_required" and reply["transaction"] == 9
    assert (await daemon.status())["mode"] == "inference"


async def test_sigkill_makes_the_broker_publish_offline_from_the_last_will(daemon, broker, probe):
    await probe.wait_for(T.availability, lambda m: m.text == "online")
    await daemon.signal(signal.SIGKILL)
    msg = await probe.wait_for(T.availability, lambda m: m.text == "offline")
    assert (msg.qos, msg.retain) == (1, True)
    assert f"Received DISCONNECT from hal0-bridge-{NODE}" not in broker.log_text()  # so it was the will


async def test_sigterm_publishes_offline_before_exiting(daemon, broker, probe):
    await probe.wait_for(T.availability, lambda m: m.text == "online")
    await daemon.signal(signal.SIGTERM)
    assert daemon.proc.returncode == 0
    msg = await probe.wait_for(T.availability, lambda m: m.text == "offline")
    assert (msg.qos, msg.retain) == (1, True)
    assert f"Received DISCONNECT from hal0-bridge-{NODE}" in broker.log_text()  # clean, not the will


async def test_broker_restart_brings_the_daemons_retained_state_back(daemon, broker, probe):
    probe.publish(T.mode_set, "generation")
    await probe.wait_for(T.mode, lambda m: m.text == "generation", timeout=SWITCH_TIMEOUT)
    await wait_status(daemon, lambda s: not s["switchover"]["active"])
    probe.close()
    await asyncio.to_thread(broker.restart)
    late = await MqttProbe(broker, username="watcher", password=USERS["watcher"]).connect("hal0/#")
    try:
        await late.wait_for(T.mode, lambda m: m.text == "generation", timeout=SWITCH_TIMEOUT)
        assert (await late.wait_for(T.availability)).text == "online"
        assert (await late.wait_for(T.status)).json()["mode"] == "generation"
    finally:
        late.close()


async def comfy_post(daemon: Daemon, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST straight to the ComfyUI stand-in (the img slot), bypassing the bridge."""
    async with aiohttp.ClientSession() as session, session.post(daemon.comfy_url + path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_busy_comfyui_refuses_inference_without_force_and_yields_with_force(daemon, probe):
    probe.publish(T.mode_set, "generation")
    await probe.wait_for(T.mode, lambda m: m.text == "generation", timeout=SWITCH_TIMEOUT)
    await wait_status(daemon, lambda s: not s["switchover"]["active"] and s["reachable"])
    await comfy_post(daemon, "/_standin/config", {"step_seconds": 30.0})  # one long render
    graph = json.loads((REPO / "tests" / "captures" / "prompt_request_example.json").read_text())
    await comfy_post(daemon, "/prompt", {"prompt": graph["prompt"]})

    probe.publish(T.mode_set, json.dumps({"mode": "inference", "transaction": "polite"}))
    refused = (await probe.wait_for(T.response("switchover"), lambda m: m.json()["transaction"] == "polite")).json()
    assert refused["status"] == "error" and refused["error"]["code"] == "comfyui.busy"
    assert (await daemon.status())["mode"] == "generation"

    probe.publish(T.mode_set, json.dumps({"mode": "inference", "force": True, "transaction": "forced"}))
    forced = (await probe.wait_for(T.response("switchover"), lambda m: m.json()["transaction"] == "forced")).json()
    assert forced["status"] == "ok"
    await probe.wait_for(T.mode, lambda m: m.text == "inference", after=1, timeout=SWITCH_TIMEOUT)
    await wait_status(daemon, lambda s: not s["switchover"]["active"])
    async with aiohttp.ClientSession() as session, session.get(daemon.comfy_url + "/_standin/state") as resp:
        counters = (await resp.json())["counters"]
    assert counters["interrupt_calls"] >= 1 and counters["free_calls"] >= 1
