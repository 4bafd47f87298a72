"""Event latency: a ComfyUI queue change -> the bridge's SSE subscriber, and -> an MQTT subscriber.

A third party submits prompts straight to ComfyUI (the stand-in, its own process), the way a user of
ComfyUI's own web UI would; every submission and every completion changes the queue. Three observers
in this process timestamp each change as it reaches them:

* ``direct``: a minimal websocket client on ComfyUI itself (the baseline: the moment ComfyUI told the
  world, which is also when the bridge's own websocket hears of it);
* ``sse``: ``GET /api/events`` on the bridge, the first ``status`` whose ``queue`` shows the change;
* ``mqtt``: an independent paho client (``tests.support.mosquitto.MqttProbe``) on ``hal0/comfyui/queue``
  through a real mosquitto (skipped when mosquitto is not installed).

The bridge's event latency is ``observer - direct`` for the same change (both clocks are this process's
``perf_counter``); ``from_submit`` (observer - the moment the POST /prompt left) is reported alongside.
Run: ``.venv/bin/python -m bench.bench_events [--rounds N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_image import STEPS, graph
from bench.common import bridge, standin, summary_ms
from tests.support.mosquitto import Mosquitto, MqttProbe, Received, have_mosquitto

ROUNDS = 20
STEP_SECONDS = 0.05  # 4 steps: a 0.2 s render between the two queue changes of a round
WAIT_S = 10.0  # bound on waiting for one change to reach every observer (a hang, not a speed limit)
SETTLE_S = 0.1  # quiet gap between rounds, so changes of one round never mix with the next


@dataclass
class Observer:
    """The queue totals (running + pending) one subscriber saw, each with its receipt time."""

    name: str
    seen: list[tuple[float, int]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, at: float, total: int) -> None:
        if not self.seen or self.seen[-1][1] != total:
            self.seen.append((at, total))
            self.changed.set()

    async def first(self, total: int, after: int) -> float:
        """Receipt time of the first change to ``total`` at index >= ``after``."""
        async with asyncio.timeout(WAIT_S):
            while True:
                for at, value in self.seen[after:]:
                    if value == total:
                        return at
                self.changed.clear()
                await self.changed.wait()


async def watch_direct(session: aiohttp.ClientSession, comfy: str, obs: Observer, ready: asyncio.Event) -> None:
    async with session.ws_connect(f"{comfy}/ws?clientId={uuid.uuid4().hex}") as ws:
        ready.set()
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            at = time.perf_counter()
            data = json.loads(msg.data)
            if data.get("type") == "status":
                obs.record(at, data["data"]["status"]["exec_info"]["queue_remaining"])


async def watch_sse(session: aiohttp.ClientSession, url: str, obs: Observer, ready: asyncio.Event) -> None:
    async with session.get(f"{url}/api/events", timeout=aiohttp.ClientTimeout(total=None)) as resp:
        event = ""
        async for raw in resp.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "status":
                at = time.perf_counter()
                status = json.loads(line[6:])
                if status["reachable"]:
                    ready.set()
                obs.record(at, status["queue"]["running"] + status["queue"]["pending"])


def _mqtt_toml(broker: Mosquitto) -> str:
    return f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nbase_topic = "hal0"\n'


async def measure(rounds: int = ROUNDS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hal0-bench-events-") as tmp:
        broker = Mosquitto(Path(tmp)).start() if have_mosquitto() else None
        try:
            return await _measure(rounds, broker)
        finally:
            if broker is not None:
                broker.stop()


async def _measure(rounds: int, broker: Mosquitto | None) -> dict[str, Any]:
    direct, sse, mqtt = Observer("direct"), Observer("sse"), Observer("mqtt")
    extra = _mqtt_toml(broker) if broker else ""
    probe: MqttProbe | None = None
    async with standin(STEP_SECONDS) as comfy, bridge(comfy, extra) as url, aiohttp.ClientSession() as session:
        direct_ready, sse_ready = asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(watch_direct(session, comfy, direct, direct_ready)),
            asyncio.create_task(watch_sse(session, url, sse, sse_ready)),
        ]
        observers = [direct, sse]
        try:
            async with asyncio.timeout(WAIT_S):
                await direct_ready.wait()
                await sse_ready.wait()
            if broker is not None:
                probe = MqttProbe(broker)
                loop = asyncio.get_running_loop()
                probe.on_receive = lambda m: loop.call_soon_threadsafe(_mqtt_record, mqtt, m)  # paho's thread
                await probe.connect("hal0/#")
                await probe.wait_for("hal0/availability", lambda m: m.text == "online", timeout=WAIT_S)
                await probe.wait_for("hal0/comfyui/queue", timeout=WAIT_S)
                observers.append(mqtt)
            rows: list[dict[str, float]] = []
            for i in range(rounds):
                marks = {o.name: len(o.seen) for o in observers}
                body = {"prompt": graph(20_000 + i), "client_id": "bench-third-party"}
                submitted = time.perf_counter()
                async with session.post(f"{comfy}/prompt", json=body) as resp:
                    resp.raise_for_status()
                for total in (1, 0):  # queued, then done
                    times = {o.name: await o.first(total, marks[o.name]) for o in observers}
                    rows.append({"submitted": submitted, **times})
                    marks = {o.name: len(o.seen) for o in observers}
                await asyncio.sleep(SETTLE_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if probe is not None:
                probe.close()

    result: dict[str, Any] = {"changes": len(rows), "render_s": STEP_SECONDS * STEPS}
    result["direct_from_submit"] = summary_ms([r["direct"] - r["submitted"] for r in rows[::2]])
    for name in [o.name for o in observers if o.name != "direct"]:
        result[name] = summary_ms([r[name] - r["direct"] for r in rows])
        result[f"{name}_from_submit"] = summary_ms([r[name] - r["submitted"] for r in rows[::2]])
    if broker is None:
        result["mqtt"] = None
        result["mqtt_skipped"] = "mosquitto not installed"
    return result


def _mqtt_record(obs: Observer, msg: Received) -> None:
    """On the loop; ``msg.at`` is the receipt time taken in paho's thread."""
    if msg.topic == "hal0/comfyui/queue":
        queue = msg.json()
        obs.record(msg.at, queue["running"] + queue["pending"])


async def run(rounds: int = ROUNDS) -> dict[str, Any]:
    return await measure(rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    print(json.dumps(asyncio.run(run(parser.parse_args().rounds)), indent=2))
