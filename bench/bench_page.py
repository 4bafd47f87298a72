"""The Image-Gen page: its weight, and the time from a status change to the page's DOM showing it.

* **weight**: every response the page loads in Debian's chromium (``GET /`` and its ``/ui/`` files;
  the API and images excluded), uncompressed and gzip-compressed;
* **status -> DOM**: a third party posts prompts straight to ComfyUI (the stand-in, its own process),
  so the queue and the progress change; every change is a new snapshot with ``updated_at`` (the
  moment the bridge's hub took it). The page fires ``hal0:status`` once its DOM shows a snapshot;
  a listener added by this bench records ``Date.now() - updated_at`` in the browser. Bridge, stand-in
  and browser share this machine's clock. The first snapshot (older than the page) is not counted.

Run: ``.venv/bin/python -m bench.bench_page [--rounds N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import time
import uuid
from typing import Any

import aiohttp

from bench.bench_image import graph
from bench.common import bridge, percentile, standin
from tests.support.live_bridge import launch_chromium

ROUNDS = 50
STEP_SECONDS = 0.05  # 4 steps: queue up, 4 progress steps, queue down per round
WAIT_S = 15.0

RECORDER = """() => {
  window.__lat = [];
  const since = Date.now() / 1000;
  document.addEventListener("hal0:status", (ev) => {
    const at = ev.detail.updated_at;
    if (at > since) window.__lat.push(Date.now() - at * 1000);
  });
}"""


async def weight(page: Any, url: str) -> dict[str, Any]:
    loaded: list[Any] = []
    page.on("response", lambda r: loaded.append(r))
    await page.goto(url + "/")
    await page.wait_for_function("() => document.getElementById('conn').classList.contains('on')")
    files: dict[str, int] = {}
    compressed = 0
    for resp in loaded:
        path = resp.url.removeprefix(url)
        if path.startswith("/api/") or path.startswith("/v1/"):
            continue
        body = await resp.body()
        files[path] = len(body)
        compressed += len(gzip.compress(body))
    return {"files": files, "bytes": sum(files.values()), "gzip_bytes": compressed}


async def status_to_dom(page: Any, comfy_url: str, rounds: int) -> dict[str, Any]:
    await page.evaluate(RECORDER)
    async with aiohttp.ClientSession() as session:
        for seed in range(rounds):
            body = {"prompt": graph(seed), "client_id": uuid.uuid4().hex}
            async with session.post(comfy_url + "/prompt", json=body) as resp:
                prompt_id = (await resp.json())["prompt_id"]
            async with asyncio.timeout(WAIT_S):
                while True:
                    async with session.get(f"{comfy_url}/history/{prompt_id}") as resp:
                        if prompt_id in await resp.json():
                            break
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.1)  # the last change (queue empty) reaches the page
    samples: list[float] = await page.evaluate("window.__lat")
    if not samples:
        raise RuntimeError("the page showed no status change")
    return {
        "samples": len(samples),
        "p50_ms": round(percentile(samples, 50), 2),
        "p99_ms": round(percentile(samples, 99), 2),
        "max_ms": round(max(samples), 2),
    }


async def run(rounds: int = ROUNDS) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    started = time.perf_counter()
    async with standin(STEP_SECONDS) as comfy_url, bridge(comfy_url) as url, async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            result = {"weight": await weight(page, url), "status_to_dom": await status_to_dom(page, comfy_url, rounds)}
        finally:
            await browser.close()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.rounds)), indent=2))


if __name__ == "__main__":
    main()
