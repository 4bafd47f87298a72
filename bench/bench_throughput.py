"""Throughput: 50 concurrent ``POST /v1/images/generations`` (n=1) against the stand-in.

Checked, not just timed: every request completes with 200 and one image; no prompt is duplicated
(distinct prompt ids, distinct cache files, ComfyUI accepted exactly 50 prompts) and none is lost
(every prompt id is in ComfyUI's history, every image URL serves a PNG). The stand-in's first render
includes a model load (``load_seconds``, as a cold ComfyUI does), so while it loads every request the
bridge forwards piles up in ComfyUI's queue: the expected peak depth is 50, i.e. the bridge neither
serialises renders itself nor submits anything twice. Depth is sampled from ``GET /_standin/state``.
Baseline in the same run: the same 50 graphs posted straight to a fresh stand-in's ``/prompt``.
Run: ``.venv/bin/python -m bench.bench_throughput``
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from bench.bench_image import SIZE, STEPS, graph
from bench.common import bridge, standin

REQUESTS = 50
LOAD_SECONDS = 2.0  # the stand-in's cold model load: the window in which the queue fills
STEP_SECONDS = 0.005  # renders after the load are short: 4 steps, 20 ms
SAMPLE_S = 0.005  # queue depth sampling period
WAIT_S = 60.0  # bound on the whole batch (a hang, not a speed limit)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def configure(session: aiohttp.ClientSession, comfy: str) -> None:
    async with session.post(f"{comfy}/_standin/config", json={"load_seconds": LOAD_SECONDS}) as resp:
        resp.raise_for_status()


async def standin_state(session: aiohttp.ClientSession, comfy: str) -> dict[str, Any]:
    async with session.get(f"{comfy}/_standin/state") as resp:
        return await resp.json()


async def sample_depth(session: aiohttp.ClientSession, comfy: str, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], (await standin_state(session, comfy))["queue_remaining"])
        await asyncio.sleep(SAMPLE_S)


async def through_bridge(session: aiohttp.ClientSession, url: str, seed: int) -> tuple[int, dict[str, Any]]:
    body = {"model": "sdxl-turbo", "prompt": "a lighthouse", "size": f"{SIZE}x{SIZE}", "seed": seed, "steps": STEPS}
    async with session.post(f"{url}/v1/images/generations", json=body) as resp:
        return resp.status, await resp.json()


async def bridge_batch() -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    async with standin(STEP_SECONDS) as comfy, bridge(comfy) as url, aiohttp.ClientSession(connector=connector) as session:
        await configure(session, comfy)
        peak, stop = [0], asyncio.Event()
        sampler = asyncio.create_task(sample_depth(session, comfy, peak, stop))
        started = time.perf_counter()
        async with asyncio.timeout(WAIT_S):
            answers = await asyncio.gather(*(through_bridge(session, url, 30_000 + i) for i in range(REQUESTS)))
        elapsed = time.perf_counter() - started
        stop.set()
        await sampler
        state = await standin_state(session, comfy)
        ok = [body for status, body in answers if status == 200 and len(body.get("data", [])) == 1]
        prompt_ids = [body["_hal0"]["prompt_id"] for body in ok]
        urls = [body["data"][0]["url"] for body in ok]
        served = 0
        for image_url in set(urls):
            async with session.get(f"{url}{image_url}") as resp:
                served += resp.status == 200 and (await resp.read()).startswith(PNG_MAGIC)
    counters = state["counters"]
    return {
        "requests": REQUESTS,
        "completed_200": len(ok),
        "statuses": sorted({status for status, _ in answers}),
        "distinct_prompt_ids": len(set(prompt_ids)),
        "distinct_images": len(set(urls)),
        "images_served": served,
        "comfyui_accepted": counters["prompts_accepted"],
        "comfyui_succeeded": counters["prompts_succeeded"],
        "comfyui_failed_or_interrupted": counters["prompts_failed"] + counters["prompts_interrupted"],
        "lost_from_history": len(set(prompt_ids) - set(state["history_ids"])),
        "peak_queue_depth": peak[0],
        "queue_depth_after": state["queue_remaining"],
        "wall_s": round(elapsed, 3),
    }


async def direct_batch() -> dict[str, Any]:
    """The same 50 graphs posted straight to ComfyUI, waiting until its queue is empty again."""
    connector = aiohttp.TCPConnector(limit=0)
    async with standin(STEP_SECONDS) as comfy, aiohttp.ClientSession(connector=connector) as session:
        await configure(session, comfy)

        async def post(seed: int) -> None:
            async with session.post(f"{comfy}/prompt", json={"prompt": graph(seed), "client_id": "bench"}) as resp:
                resp.raise_for_status()

        started = time.perf_counter()
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(*(post(30_000 + i) for i in range(REQUESTS)))
            while (await standin_state(session, comfy))["queue_remaining"]:
                await asyncio.sleep(SAMPLE_S)
        return {"wall_s": round(time.perf_counter() - started, 3)}


def passed(result: dict[str, Any]) -> bool:
    n = result["requests"]
    return (
        result["completed_200"] == n
        and result["distinct_prompt_ids"] == n
        and result["distinct_images"] == n
        and result["images_served"] == n
        and result["comfyui_accepted"] == n
        and result["comfyui_succeeded"] == n
        and result["lost_from_history"] == 0
        and result["queue_depth_after"] == 0
    )


async def run() -> dict[str, Any]:
    result = await bridge_batch()
    direct = await direct_batch()
    result["direct_wall_s"] = direct["wall_s"]
    result["wall_ratio"] = round(result["wall_s"] / direct["wall_s"], 3)
    result["passed"] = passed(result)
    result["peak_as_expected"] = result["peak_queue_depth"] == REQUESTS
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
