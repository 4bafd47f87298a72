"""The bridge's own share of a GPU switch, beyond slot start/stop and ComfyUI's readiness.

Three measurements, all with real processes and sockets on 127.0.0.1:

1. Full switches (generation <-> inference) driven through ``Arbiter.request_switch`` with process
   slots that start instantly (``sleep``; LLM readiness = process state) and the ComfyUI stand-in as
   the img slot's HTTP side (running as its own process, already up). Reported: wall time per switch,
   the arbiter's phases, and the remainder (persisting state twice, slot bookkeeping, status and
   events) — the bridge's own cost.
2. Readiness polling lag: an HTTP slot whose ``/health`` turns 200 at a known moment; how long after
   that moment ``Slot.start()`` returns.
3. Drain polling lag: a llama.cpp-like ``/slots`` whose ``is_processing`` clears at a known moment;
   how long after that ``Slot.drain()`` returns.
4. The release phase's added time for an idle ComfyUI (:func:`release`), with and without amdgpu sysfs.

Run: ``.venv/bin/python -m bench.bench_switch [--rounds N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from hal0_bridge import config as config_mod
from hal0_bridge.comfyui.client import ComfyUIClient
from hal0_bridge.gpu.arbiter import Arbiter
from hal0_bridge.gpu.engine import ComfyEngineControl
from hal0_bridge.gpu.slots.manager import SlotManager
from hal0_bridge.status import StatusHub

from bench.common import free_port, standin, summary_ms

FLIP_AFTER = (0.2, 0.5)  # the fake slot turns ready / idle after a random delay in this range


def _config(state_dir: Path, comfy_url: str, llm_count: int, extra_slot: dict[str, Any] | None = None) -> Any:
    instant = {"backend": "process", "command": ["sleep", "3600"], "ready_timeout": 10.0, "stop_timeout": 5.0,
               "drain_timeout": 5.0, "poll_interval": 60.0, "inflight": "none"}  # fmt: skip
    slots: dict[str, Any] = {f"llm{i}": {"group": "llm", **instant} for i in range(1, llm_count + 1)}
    slots["comfy"] = {"group": "img", **instant}
    if extra_slot:
        slots["probe"] = {"group": "llm", **instant, **extra_slot}
    return config_mod.build(
        {
            "server": {"state_dir": str(state_dir)},
            "comfyui": {"url": comfy_url, "probe_interval": 60.0},
            "image": {"idle_restore_minutes": 0},
            "slots": slots,
        }
    )


async def switches(comfy_url: str, rounds: int, llm_count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hal0-bench-switch-") as tmp:
        config = _config(Path(tmp), comfy_url, llm_count)
        hub = StatusHub()
        async with aiohttp.ClientSession() as session:
            slots = SlotManager.from_config(config, hub, session)
            arbiter = Arbiter(config, hub, ComfyEngineControl(ComfyUIClient(session, config.comfyui, "bench")), slots)
            await slots.start()
            await asyncio.gather(*(s.start() for s in slots.llm))
            await arbiter.start()
            results: dict[str, list[dict[str, float]]] = {"generation": [], "inference": []}
            try:
                with hub.subscribe(initial=False) as sub:
                    for _ in range(rounds):
                        for target in ("generation", "inference"):
                            started = time.perf_counter()
                            await arbiter.request_switch(target, force=True)  # type: ignore[arg-type]
                            while True:
                                msg = await sub.get()
                                if msg.kind == "event" and msg.data["type"] in ("switch_finished", "switch_failed"):
                                    break
                            total = time.perf_counter() - started
                            if msg.data["error"]:
                                raise RuntimeError(msg.data["error"])
                            results[target].append({"total": total, **msg.data["phases"]})
            finally:
                await arbiter.stop()
                await slots.stop()

    def describe(rows: list[dict[str, float]]) -> dict[str, Any]:
        phases = {p: round(statistics.median(r[p] for r in rows) * 1000, 3) for p in ("drain", "stop", "start", "ready")}
        own = [r["total"] - sum(r[p] for p in ("drain", "stop", "start", "ready")) for r in rows]
        return {"total": summary_ms([r["total"] for r in rows]), "phases_p50_ms": phases, "bridge_own": summary_ms(own)}

    return {target: describe(rows) for target, rows in results.items()}


class _FlipServer:
    """``/health`` 503 -> 200 and ``/slots`` busy -> idle at ``flip_at`` (monotonic seconds)."""

    def __init__(self) -> None:
        self.flip_at = float("inf")
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    def _flipped(self) -> bool:
        return time.monotonic() >= self.flip_at

    async def health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"} if self._flipped() else {"error": "loading"},
                                 status=200 if self._flipped() else 503)  # fmt: skip

    async def slots(self, _: web.Request) -> web.Response:
        return web.json_response([{"id": 0, "is_processing": not self._flipped()}])

    async def __aenter__(self) -> _FlipServer:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/slots", self.slots)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def polling_lag(comfy_url: str, rounds: int) -> dict[str, Any]:
    ready_lag: list[float] = []
    drain_lag: list[float] = []
    async with _FlipServer() as flip, aiohttp.ClientSession() as session:
        with tempfile.TemporaryDirectory(prefix="hal0-bench-poll-") as tmp:
            extra = {"url": f"http://127.0.0.1:{flip.port}", "ready_path": "/health", "inflight": "slots"}
            config = _config(Path(tmp), comfy_url, 0, extra)
            slots = SlotManager.from_config(config, StatusHub(), session)
            await slots.start()
            probe = slots.get("probe")
            assert probe is not None
            try:
                for _ in range(rounds):
                    flip.flip_at = time.monotonic() + random.uniform(*FLIP_AFTER)
                    await probe.start()
                    ready_lag.append(time.monotonic() - flip.flip_at)
                    flip.flip_at = time.monotonic() + random.uniform(*FLIP_AFTER)
                    assert (await probe.drain(5.0)).idle
                    drain_lag.append(time.monotonic() - flip.flip_at)
                    flip.flip_at = float("inf")
                    await probe.stop()
            finally:
                await slots.stop()
    return {"readiness_lag": summary_ms(ready_lag), "drain_lag": summary_ms(drain_lag)}


RELEASE_CASES = {
    # name: (stand-in settings, fake amdgpu sysfs, render before each switch to inference)
    "no_sysfs": ({}, False, False),
    "sysfs_nothing_ran": ({"model_vram_bytes": 8 * 1024**3}, True, False),
    "sysfs_models_loaded": ({"model_vram_bytes": 8 * 1024**3}, True, True),
}


async def release(rounds: int) -> dict[str, Any]:
    """The release phase's added time for an idle ComfyUI: ``phases.release`` of a switch to inference
    (everything else in the switch is what it was before the phase existed).

    Three idle cases, each with its own stand-in: no amdgpu sysfs (idle check only: ``GET /queue``, the
    websocket, ``GET /history?max_items=1``); a fake sysfs and nothing rendered since ComfyUI was last
    freed (no memory to wait for); a fake sysfs and a render before each switch (8 GiB "loaded", freed
    at once by /free: the GTT wait ends at the first reading that dropped). One warm-up round first: the
    bridge's first release after its own start knows nothing of ComfyUI's past.
    """
    from hal0_bridge.comfyui.facade import ComfyUI
    from hal0_bridge.gpu.memory import sysfs_gtt

    from bench.common import process, wait_http

    out: dict[str, Any] = {}
    graph = json.loads((Path(__file__).resolve().parents[1] / "tests" / "captures" / "prompt_request_example.json")
                       .read_text())["prompt"]  # fmt: skip
    for case, (settings, with_sysfs, render_first) in RELEASE_CASES.items():
        with tempfile.TemporaryDirectory(prefix="hal0-bench-release-") as tmp:
            drm = Path(tmp) / "drm"
            sets = {**settings, **({"gtt_sysfs_dir": str(drm)} if with_sysfs else {})}
            flags = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
            port = free_port()
            async with process(sys.executable, "-m", "tests.support.comfyui_standin", "--port", str(port), *flags):
                url = f"http://127.0.0.1:{port}"
                await wait_http(f"{url}/system_stats")
                config = _config(Path(tmp) / "state", url, 1)
                hub = StatusHub()
                comfy = ComfyUI(config.comfyui, hub, gtt=sysfs_gtt(drm) if with_sysfs else None)
                async with aiohttp.ClientSession() as session:
                    slots = SlotManager.from_config(config, hub, session)
                    arbiter = Arbiter(config, hub, ComfyEngineControl(comfy), slots)
                    await comfy.start()
                    await slots.start()
                    await asyncio.gather(*(s.start() for s in slots.slots))
                    await arbiter.start()
                    samples: list[float] = []
                    try:
                        with hub.subscribe(initial=False) as sub:
                            for i in range(rounds + 1):
                                for target in ("generation", "inference"):
                                    if target == "inference" and render_first:
                                        await _render_directly(session, url, graph)
                                    await arbiter.request_switch(target, force=True)  # type: ignore[arg-type]
                                    end = await _switch_end(sub)
                                    if target == "inference" and i > 0:
                                        samples.append(end["phases"]["release"])
                    finally:
                        await arbiter.stop()
                        await slots.stop()
                        await comfy.stop()
            out[case] = summary_ms(samples)
    return out


async def _render_directly(session: aiohttp.ClientSession, url: str, graph: dict[str, Any]) -> None:
    async with session.post(f"{url}/prompt", json={"prompt": {**graph, "3": {**graph["3"], "inputs": {
            **graph["3"]["inputs"], "seed": random.randrange(2**32)}}}}) as resp:  # fmt: skip
        prompt_id = (await resp.json())["prompt_id"]
    while True:
        async with session.get(f"{url}/history/{prompt_id}") as resp:
            if await resp.json():
                return
        await asyncio.sleep(0.01)


async def _switch_end(sub: Any) -> dict[str, Any]:
    while True:
        msg = await sub.get()
        if msg.kind == "event" and msg.data["type"] in ("switch_finished", "switch_failed"):
            if msg.data["error"]:
                raise RuntimeError(msg.data["error"])
            return dict(msg.data)


async def main(rounds: int) -> None:
    async with standin() as comfy_url:
        out = {
            "rounds": rounds,
            "switch_1_llm_slot": await switches(comfy_url, rounds, 1),
            "switch_3_llm_slots": await switches(comfy_url, rounds, 3),
            "polling": await polling_lag(comfy_url, rounds),
        }
    out["release_idle"] = await release(rounds)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
