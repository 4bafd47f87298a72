"""Make docs/images/page.png: the Image-Gen page of a real bridge (process slots, the ComfyUI stand-in,
whose images are seeded noise) after a switch to generation and a few renders, in Debian's chromium.

Run: ``.venv/bin/python -m tests.support.page_screenshot [OUT.png]``
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from playwright.async_api import async_playwright, expect

from tests.support.live_bridge import REPO, LiveBridge, free_port, launch_chromium, process_slots, save_small_png

OUT = REPO / "docs" / "images" / "page.png"
WAIT_MS = 60_000


async def main(out: Path) -> None:
    comfy_port = free_port()
    with tempfile.TemporaryDirectory(prefix="hal0-shot-") as tmp:
        bridge = LiveBridge({
            "server": {"state_dir": tmp},
            "comfyui": {"url": f"http://127.0.0.1:{comfy_port}", "probe_interval": 0.2},
            "image": {"idle_restore_minutes": 30},
            "slots": process_slots(comfy_port),
            "mqtt": {"node_id": "strix"},
        })  # fmt: skip
        await bridge.start()
        try:
            async with async_playwright() as pw:
                browser = await launch_chromium(pw)
                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                await page.goto(bridge.url + "/")
                await expect(page.locator("#slots li[data-slot=llm] .state-ready")).to_be_visible(timeout=WAIT_MS)
                await page.click("#switch-btn")
                await expect(page.locator("#mode")).to_have_text("generation", timeout=WAIT_MS)
                for prompt in ("a lighthouse at dusk", "a red bicycle", "a fox in the snow"):
                    await page.fill("#prompt", prompt)
                    await page.fill("#size", "256x256")
                    await page.click("#generate-btn")
                    await expect(page.locator("#generate-btn")).to_have_text("Generate", timeout=WAIT_MS)
                await page.fill("#prompt", "a lighthouse at dusk, oil painting")
                await page.wait_for_function("() => [...document.querySelectorAll('#gallery img')]"
                                             ".every(i => i.complete && i.naturalWidth > 0)")  # fmt: skip
                await page.evaluate("document.getElementById('notice').hidden = true")
                save_small_png(await page.screenshot(), out)
                await browser.close()
        finally:
            await bridge.stop()
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
