"""Edit route overhead: ``POST /v1/images/edits`` vs. a direct ComfyUI client doing the same edit.

A 1024x1024 photo-like PNG (~2.4 MB, noise over gradients) and a 1024x1024 RGBA mask, the inpaint
template, 1 step, on the same stand-in. "Direct" is the least a ComfyUI client can do for an edit:
one persistent websocket, both files uploaded at once to ``/upload/image`` (temp, overwrite), POST the
prebuilt inpaint graph naming them, wait for ``executing {node: null}``, GET /view. "Bridge" is the
multipart edit request, then GET of the returned cache URL. Both end with the 1024x1024 PNG in hand,
so the stand-in's own work (decoding the uploads, the masked 1024x1024 PNG) is in both and cancels
out: the difference is what the bridge adds (the extra hop of the uploads through it, reading the
form, checking both files, staging, the cache and its GET).

On 2 shared cores the stand-in's time is bimodal (~100 or ~130 ms for the same edit), which makes a
difference of medians swing by +-10 ms from run to run. So the headline figure is the bridge's **own**
time, per round: the client's whole time minus what the bridge spent waiting on ComfyUI (its
``_hal0.timings`` ``upload_s`` + ``render_s``, which ends with the images fetched) — the same
quantity the medians estimate, without ComfyUI's noise in it. Medians against the direct client are
reported next to it as the cross-check. The same is measured for a generation of the same size; the
edit's extra over a generation is the difference of the two own times. Rounds interleave the two
clients (alternating who goes first), each with its own seed.
Run: ``.venv/bin/python -m bench.bench_edit``
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import time
import uuid
from typing import Any

import aiohttp
from hal0_bridge.config import build
from hal0_bridge.images.catalogue import Catalogue
from hal0_bridge.images.workflows import WorkflowRenderer, build_params
from PIL import Image

from bench.common import bridge, standin, submit_and_fetch

ROUNDS = 25
SIDE = 1024
STEPS = 1
MODEL = "sdxl-turbo"


def photo_png(side: int = SIDE) -> bytes:
    """Photo-like: noise over gradients, so it compresses as badly as a camera picture (~2.4 MB)."""
    noise = Image.effect_noise((side, side), 40)
    ramp = Image.linear_gradient("L").resize((side, side))
    out = io.BytesIO()
    Image.merge("RGB", [noise, ramp, noise.rotate(90)]).save(out, format="PNG")
    return out.getvalue()


def mask_png(side: int = SIDE) -> bytes:
    image = Image.new("RGBA", (side, side), (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (side // 4, side // 4, side * 3 // 4, side * 3 // 4))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def graph(seed: int, *, image: str = "", mask: str = "") -> dict[str, Any]:
    spec = Catalogue.from_config(build({})).resolve(MODEL)
    template = spec.inpaint_template if image else spec.template
    assert template is not None
    params = build_params(spec, prompt="a lighthouse", seed=seed, steps=STEPS, width=SIDE, height=SIDE, batch_size=1,
                          filename_prefix="bench", image=image, mask=mask, denoise=0.75)  # fmt: skip
    return WorkflowRenderer(None).render(template, params)


class DirectClient:
    """One persistent websocket; uploads (for an edit), POST /prompt, wait, GET /view."""

    def __init__(self, session: aiohttp.ClientSession, comfy: str) -> None:
        self.session, self.comfy, self.client_id = session, comfy, uuid.uuid4().hex
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self) -> None:
        self.ws = await self.session.ws_connect(f"{self.comfy}/ws?clientId={self.client_id}")

    async def _upload(self, data: bytes, name: str) -> str:
        form = aiohttp.FormData()
        form.add_field("image", data, filename=name, content_type="image/png")
        form.add_field("subfolder", "bench")
        form.add_field("type", "temp")
        form.add_field("overwrite", "true")
        async with self.session.post(f"{self.comfy}/upload/image", data=form) as resp:
            answer = await resp.json()
        return f"{answer['subfolder']}/{answer['name']} [temp]"

    async def once(self, seed: int, image: bytes | None = None, mask: bytes | None = None) -> float:
        assert self.ws is not None
        started = time.perf_counter()
        if image is not None and mask is not None:
            image_name, mask_name = await asyncio.gather(self._upload(image, "image.png"), self._upload(mask, "mask.png"))
            body = {"prompt": graph(seed, image=image_name, mask=mask_name), "client_id": self.client_id}
        else:
            body = {"prompt": graph(seed), "client_id": self.client_id}
        await submit_and_fetch(self.session, self.ws, self.comfy, body)
        return time.perf_counter() - started


async def bridge_once(
    session: aiohttp.ClientSession, url: str, seed: int, image: bytes | None = None, mask: bytes | None = None
) -> tuple[float, float]:
    """(the client's whole time, the bridge's own part of it: minus its waits on ComfyUI)."""
    started = time.perf_counter()
    if image is not None and mask is not None:
        form = aiohttp.FormData()
        for key, value in {"model": MODEL, "prompt": "a lighthouse", "seed": str(seed), "steps": str(STEPS)}.items():
            form.add_field(key, value)
        form.add_field("image", image, filename="image.png", content_type="image/png")
        form.add_field("mask", mask, filename="mask.png", content_type="image/png")
        request = session.post(f"{url}/v1/images/edits", data=form)
    else:
        body = {"model": MODEL, "prompt": "a lighthouse", "size": f"{SIDE}x{SIDE}", "seed": seed, "steps": STEPS}
        request = session.post(f"{url}/v1/images/generations", json=body)
    async with request as resp:
        assert resp.status == 200, await resp.text()
        answer = await resp.json()
    for item in answer["data"]:
        async with session.get(f"{url}{item['url']}") as resp:
            assert resp.status == 200
            await resp.read()
    total = time.perf_counter() - started
    timings = answer["_hal0"]["timings"]
    return total, total - timings.get("upload_s", 0.0) - timings["render_s"]


def _ms(value: float) -> float:
    return round(value * 1000, 2)


async def _pairs(direct: DirectClient, session: aiohttp.ClientSession, url: str, rounds: int, seed0: int,
                 image: bytes | None, mask: bytes | None) -> tuple[list[tuple[float, float]], list[float]]:  # fmt: skip
    ours: list[tuple[float, float]] = []
    theirs: list[float] = []
    for i in range(rounds):
        if i % 2:
            theirs.append(await direct.once(seed0 + 2 * i, image, mask))
            ours.append(await bridge_once(session, url, seed0 + 2 * i + 1, image, mask))
        else:
            ours.append(await bridge_once(session, url, seed0 + 2 * i + 1, image, mask))
            theirs.append(await direct.once(seed0 + 2 * i, image, mask))
    return ours, theirs


def _overhead(ours: list[tuple[float, float]], theirs: list[float]) -> dict[str, float]:
    totals = [total for total, _ in ours]
    own = [own for _, own in ours]
    return {
        "bridge_own_p50_ms": _ms(statistics.median(own)),
        "bridge_own_p90_ms": _ms(sorted(own)[int(0.9 * (len(own) - 1))]),
        "direct_p50_ms": _ms(statistics.median(theirs)),
        "bridge_p50_ms": _ms(statistics.median(totals)),
        "overhead_ms": _ms(statistics.median(totals) - statistics.median(theirs)),
        "overhead_paired_ms": _ms(statistics.median([a - b for a, b in zip(totals, theirs)])),
    }


async def run(rounds: int = ROUNDS) -> dict[str, Any]:
    image, mask = photo_png(), mask_png()
    async with standin() as comfy, bridge(comfy) as url, aiohttp.ClientSession() as session:
        direct = DirectClient(session, comfy)
        await direct.connect()
        for _ in range(2):  # warm-up: models, both paths, the bridge's thread pool
            await bridge_once(session, url, 1, image, mask)
            await direct.once(2, image, mask)
            await bridge_once(session, url, 3)
            await direct.once(4)
        edit = _overhead(*await _pairs(direct, session, url, rounds, 1000, image, mask))
        generation = _overhead(*await _pairs(direct, session, url, rounds, 5000, None, None))
    return {
        "rounds": rounds,
        "image_bytes": len(image),
        "mask_bytes": len(mask),
        "size": f"{SIDE}x{SIDE}",
        "edit": edit,
        "generation": generation,
        "edit_extra_over_generation_ms": round(edit["bridge_own_p50_ms"] - generation["bridge_own_p50_ms"], 2),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
