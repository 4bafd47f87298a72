"""Latency from a ComfyUI websocket event to the MQTT message at a subscriber, p50/p99.

Chain measured: ComfyUI stand-in writes a websocket ``status`` frame (queue changed: a prompt was
queued, or a render finished) -> the bridge process (its ComfyUI websocket client, the status hub,
the MQTT bridge, paho) -> mosquitto -> an independent paho subscriber in this process. The stand-in
runs in this process with its socket writer wrapped to note when each frame is written, so both ends
of the measurement use this process's ``perf_counter``. All on loopback. The bridge's periodic
ComfyUI probe is slowed down so every queue change the subscriber sees came over the websocket.

Samples are spaced further apart than ``state_min_interval``: discrete state (queue, engine, mode)
is published at once anyway; the spacing just keeps one sample from riding on another.
Run: ``.venv/bin/python -m bench.bench_mqtt_latency [--samples N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import ROOT, bridge, summary_ms
from tests.support.comfyui_standin import ComfyStandIn
from tests.support.mosquitto import Mosquitto, MqttProbe

RENDER_SECONDS = 0.3  # one render, so "queued" and "finished" are separate events
GAP_SECONDS = 0.3  # between samples
WAIT_SECONDS = 10.0
QUEUE = "hal0/comfyui/queue"


def graph(seed: int) -> dict[str, Any]:
    body = json.loads((ROOT / "tests" / "captures" / "prompt_request_example.json").read_text())
    body["prompt"]["3"]["inputs"]["seed"] = seed  # a new seed each time: no cached (instant) runs
    body.pop("client_id", None)
    return body


def record_status_frames(comfy: ComfyStandIn, sent: list[tuple[float, int]]) -> None:
    """Note (time sent, queue_remaining) for every websocket ``status`` frame the stand-in sends."""
    original = comfy.hub._send_one  # noqa: SLF001 - the stand-in is a test fixture, not our code

    async def send_one(ws: Any, message: Any) -> None:
        payload = message.payload
        if message.kind == "json" and payload.get("type") == "status":
            # noted as the frame is handed to the socket: the bridge may act before this coroutine resumes
            sent.append((time.perf_counter(), payload["data"]["status"]["exec_info"]["queue_remaining"]))
        await original(ws, message)

    comfy.hub._send_one = send_one  # type: ignore[method-assign]  # noqa: SLF001


async def run(samples: int) -> dict[str, Any]:
    sent: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory(prefix="hal0-bench-mqtt-") as tmp, Mosquitto(Path(tmp) / "broker") as broker:
        comfy = ComfyStandIn(render_seconds=RENDER_SECONDS)
        await comfy.start()
        record_status_frames(comfy, sent)
        probe = await MqttProbe(broker).connect(QUEUE, "hal0/availability")
        extra = (
            "probe_interval = 3600\n"  # only the websocket moves the queue during the run
            f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nnode_id = "bench"\n'
        )
        try:
            async with bridge(comfy.url, extra), aiohttp.ClientSession() as session:
                await probe.wait_for("hal0/availability", lambda m: m.text == "online", timeout=WAIT_SECONDS)
                await asyncio.sleep(1.0)  # the bridge's websocket is connected and the first probe is done
                sent.clear()
                probe.clear()
                for seed in range(samples):
                    posted = time.perf_counter()
                    async with session.post(f"{comfy.url}/prompt", json=graph(seed)) as resp:
                        assert resp.status == 200, await resp.text()
                    busy = await probe.wait_for(QUEUE, lambda m: m.at > posted and total(m) > 0, timeout=WAIT_SECONDS)
                    await probe.wait_for(QUEUE, lambda m: m.at > busy.at and total(m) == 0, timeout=WAIT_SECONDS)
                    await asyncio.sleep(GAP_SECONDS)
        finally:
            probe.close()
            await comfy.stop()
    return latencies(sent, probe)


def total(message: Any) -> int:
    queue = message.json()
    return queue["running"] + queue["pending"]


def latencies(sent: list[tuple[float, int]], probe: MqttProbe) -> dict[str, Any]:
    """Match each frame that changed the count with the first queue message after it showing that count.

    ComfyUI repeats ``status`` frames with an unchanged count; the bridge publishes changes only,
    so repeated frames have no message of their own and are skipped.
    """
    arrived = [(m.at, total(m)) for m in probe.messages(QUEUE)]
    queued: list[float] = []
    finished: list[float] = []
    changes = [frame for i, frame in enumerate(sent) if i == 0 or frame[1] != sent[i - 1][1]]
    for t_sent, remaining in changes:
        match = next((t for t, total in arrived if t >= t_sent and total == remaining), None)
        if match is None:
            continue  # coalesced with a later change (not expected with this spacing)
        (finished if remaining == 0 else queued).append(match - t_sent)
    return {
        "frames": len(sent),
        "changes": len(changes),
        "queued": {"n": len(queued), **summary_ms(queued)} if queued else None,
        "render_finished": {"n": len(finished), **summary_ms(finished)} if finished else None,
        "all": summary_ms(queued + finished) if queued or finished else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    result = asyncio.run(run(args.samples))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
