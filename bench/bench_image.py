"""Image route overhead: through the bridge vs. the same graph straight to ComfyUI.

Same stand-in, fixed render times (0 s, 0.2 s, 2 s: ``step_seconds`` x ``STEPS``). "Direct" is a minimal
ComfyUI client: one persistent websocket, POST a prebuilt graph with client_id, wait for
``executing {node: null}``, GET /view. "Bridge" is ``POST /v1/images/generations`` with the same model,
size and steps, then GET of the returned cache URL: both end with the PNG bytes in hand. Rounds are
interleaved (and which client goes first alternates), each with its own seed so ComfyUI never answers
from its cache. Overhead = median(bridge) - median(direct), also the median of the per-round
differences ("paired") and the ratio of the medians; all measured in this one run.
Run: ``.venv/bin/python -m bench.bench_image``
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from hal0_bridge.config import build
from hal0_bridge.images.catalogue import Catalogue
from hal0_bridge.images.workflows import WorkflowRenderer, build_params

from bench.common import bridge, standin, submit_and_fetch

ROUNDS = {0.0: 21, 0.05: 15, 0.5: 13}  # per step_seconds: fewer of the long renders keeps the run short
TMPFS_ROUNDS = {0.0: 15, 0.5: 9}
TMPFS = "/dev/shm"
SIZE = 64
STEPS = 4


def graph(seed: int) -> dict[str, Any]:
    spec = Catalogue.from_config(build({})).resolve("sdxl-turbo")
    params = build_params(spec, prompt="a lighthouse", seed=seed, steps=STEPS, width=SIZE, height=SIZE,
                          batch_size=1, filename_prefix="bench")
    return WorkflowRenderer(None).render(spec.template, params)


class DirectClient:
    """The least a ComfyUI client can do: one persistent websocket, POST /prompt, wait, GET /view."""

    def __init__(self, session: aiohttp.ClientSession, comfy: str) -> None:
        self.session, self.comfy, self.client_id = session, comfy, uuid.uuid4().hex
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> None:
        self.ws = await self.session.ws_connect(f"{self.comfy}/ws?clientId={self.client_id}")

    async def once(self, seed: int) -> float:
        assert self.ws is not None
        body = {"prompt": graph(seed), "client_id": self.client_id}  # a client has its graph ready
        started = time.perf_counter()
        await submit_and_fetch(self.session, self.ws, self.comfy, body)
        return time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class BridgeRound:
    """One bridge round: client-side times and the bridge's own ``_hal0.timings`` (seconds)."""

    total: float  # POST + GET of the image, as the client sees it
    post: float
    get: float
    timings: dict[str, float]


async def bridge_once(session: aiohttp.ClientSession, url: str, seed: int) -> BridgeRound:
    started = time.perf_counter()
    body = {"model": "sdxl-turbo", "prompt": "a lighthouse", "size": f"{SIZE}x{SIZE}", "seed": seed, "steps": STEPS}
    async with session.post(f"{url}/v1/images/generations", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    posted = time.perf_counter()
    for item in answer["data"]:
        async with session.get(f"{url}{item['url']}") as resp:
            assert resp.status == 200
            await resp.read()
    done = time.perf_counter()
    return BridgeRound(done - started, posted - started, done - posted, answer["_hal0"]["timings"])


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


async def measure(step_seconds: float, rounds: int, extra_toml: str = "") -> dict[str, Any]:
    async with standin(step_seconds) as comfy, bridge(comfy, extra_toml) as url, aiohttp.ClientSession() as session:
        direct_client = DirectClient(session, comfy)
        await direct_client.connect()
        await bridge_once(session, url, 0)  # warm-up both paths
        await direct_client.once(0)
        direct: list[float] = []
        through: list[BridgeRound] = []
        for i in range(1, rounds + 1):  # interleaved, so machine noise hits both alike
            if i % 2:
                direct.append(await direct_client.once(i))
                through.append(await bridge_once(session, url, 10_000 + i))  # own seeds: no cache hits
            else:
                through.append(await bridge_once(session, url, 10_000 + i))
                direct.append(await direct_client.once(i))
    totals = [r.total for r in through]
    d, b = statistics.median(direct), statistics.median(totals)
    return {
        "render_s": round(step_seconds * STEPS, 3),
        "rounds": rounds,
        "direct_p50_ms": round(d * 1000, 2),
        "bridge_p50_ms": round(b * 1000, 2),
        "overhead_ms": round((b - d) * 1000, 2),
        "overhead_paired_ms": _ms([r.total - x for r, x in zip(through, direct)]),
        "ratio": round(b / d, 3),
        # where the bridge's time goes (medians): ComfyUI submit -> images fetched, as the bridge saw it;
        # the cache write; the client -> bridge hop (POST round trip minus the bridge's total); the GET
        "parts_p50_ms": {
            "bridge_render_minus_direct": _ms([r.timings["render_s"] - x for r, x in zip(through, direct)]),
            "cache_write": _ms([r.timings["total_s"] - r.timings["render_s"] for r in through]),
            "client_hop": _ms([r.post - r.timings["total_s"] for r in through]),
            "cache_get": _ms([r.get for r in through]),
        },
    }


async def run(rounds: dict[float, int] = ROUNDS) -> list[dict[str, Any]]:
    return [await measure(step, n) for step, n in rounds.items()]


async def run_cache_on_tmpfs(rounds: dict[float, int] = TMPFS_ROUNDS) -> list[dict[str, Any]]:
    """Diagnostic: the same with the image cache on tmpfs, where the cache's fsync costs nothing.

    The gap to :func:`run` is what writing each image durably to the state disk costs the request.
    """
    if not Path(TMPFS).is_dir():
        return []
    with tempfile.TemporaryDirectory(prefix="hal0-bench-cache-", dir=TMPFS) as cache_dir:
        return [await measure(step, n, f'[image]\ncache_dir = "{cache_dir}"\n') for step, n in rounds.items()]


async def main() -> dict[str, list[dict[str, Any]]]:
    return {"state_disk": await run(), "cache_on_tmpfs": await run_cache_on_tmpfs()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main()), indent=2))
