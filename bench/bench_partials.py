"""Latency from ComfyUI's latent-preview frame to the client's ``partial_image`` event, p50/p99.

Chain measured: the ComfyUI stand-in (``preview_method = latent2rgb``: one JPEG frame per sampler step,
512x512 as ``--preview-size`` makes them) writes a binary websocket frame -> the bridge process (its
ComfyUI websocket reader, the frame parser, the preview picker, the SSE writer: base64 + JSON) -> an
SSE client in this process reading ``POST /v1/images/generations`` with ``stream: true,
partial_images: 3``. The stand-in runs in this process with its socket writer wrapped to note when
each frame is handed to the socket, so both ends use this process's ``perf_counter``; the picker's
rule (:func:`hal0_bridge.images.partials.preview_steps`) says which frame each partial image is.
Steps are spaced (``step_seconds``) so one sample never rides on another.
Run: ``.venv/bin/python -m bench.bench_partials``
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from hal0_bridge.images.partials import preview_steps

from bench.common import bridge, summary_ms
from tests.support.comfyui_standin import ComfyStandIn

REQUESTS = 15
STEPS = 8
PARTIALS = 3
STEP_SECONDS = 0.05


def record_binary_frames(comfy: ComfyStandIn, sent: list[float]) -> None:
    """Note when every binary frame (a preview) is handed to a socket."""
    original = comfy.hub._send_one  # noqa: SLF001 - the stand-in is a test fixture, not our code

    async def send_one(ws: Any, message: Any) -> None:
        if message.kind == "bytes":
            sent.append(time.perf_counter())
        await original(ws, message)

    comfy.hub._send_one = send_one  # type: ignore[method-assign]  # noqa: SLF001


async def one_stream(session: aiohttp.ClientSession, url: str, seed: int) -> list[tuple[int, float]]:
    """(partial_image_index, time received) of every partial image of one streamed generation."""
    body = {"model": "sd15", "prompt": "a lighthouse", "size": "512x512", "steps": STEPS, "seed": seed,
            "stream": True, "partial_images": PARTIALS}  # fmt: skip
    got: list[tuple[int, float]] = []
    async with session.post(f"{url}/v1/images/generations", json=body) as resp:
        assert resp.status == 200, await resp.text()
        async for raw in resp.content:
            if raw.startswith(b"data: "):
                at = time.perf_counter()
                data = json.loads(raw[6:])
                if data["type"].endswith(".partial_image"):
                    got.append((data["partial_image_index"], at))
    return got


async def run(requests: int = REQUESTS) -> dict[str, Any]:
    picked = sorted(preview_steps(STEPS, PARTIALS))  # 1-based step of each partial image
    sent: list[float] = []
    latencies: list[float] = []
    comfy = ComfyStandIn(preview_method="latent2rgb", step_seconds=STEP_SECONDS)
    await comfy.start()
    record_binary_frames(comfy, sent)
    try:
        # an SSE line carries a whole base64 preview (~100 KB): more than aiohttp's default line buffer
        async with bridge(comfy.url) as url, aiohttp.ClientSession(read_bufsize=1 << 20) as session:
            await one_stream(session, url, 0)  # warm-up: models loaded, websocket up
            for seed in range(1, requests + 1):
                sent.clear()
                partials = await one_stream(session, url, seed)
                assert [index for index, _ in partials] == list(range(len(picked))), partials
                assert len(sent) == STEPS, sent
                latencies += [at - sent[picked[index] - 1] for index, at in partials]
    finally:
        await comfy.stop()
    return {"requests": requests, "steps": STEPS, "partial_images": PARTIALS, "samples": len(latencies),
            **summary_ms(latencies)}  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
