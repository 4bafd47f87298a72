"""Fixtures for the page's tests: live bridges on real ports and a headless Chromium looking at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.daemon.conftest import FAST_COMFYUI
from tests.support.comfyui_standin import ComfyStandIn
from tests.support.live_bridge import CHROMIUM, LiveBridge, free_port, launch_chromium, process_slots

VIEWPORT = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
LiveFactory = Callable[..., Awaitable[LiveBridge]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():  # scripts/test installs it; a missing browser is a failure, not a skip
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    async with async_playwright() as pw:
        chromium = await launch_chromium(pw)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    tab = await context.new_page()
    try:
        yield tab
    finally:
        await context.close()


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveFactory]:
    """``await live(comfy_url, slots=..., server=...)``: a started bridge; all stopped after the test."""
    started: list[LiveBridge] = []

    async def make(comfy_url: str, *, slots: dict[str, Any] | None = None, **sections: dict[str, Any]) -> LiveBridge:
        raw: dict[str, Any] = {
            "server": {"state_dir": str(tmp_path / f"state{len(started)}"), "sse_ping_interval": 1.0},
            "comfyui": {"url": comfy_url, **FAST_COMFYUI},
            "image": {"idle_restore_minutes": 0},
        }
        for name, values in sections.items():
            raw[name] = {**raw.get(name, {}), **values}
        if slots is not None:
            raw["slots"] = slots
        running = LiveBridge(raw)
        await running.start()
        started.append(running)
        return running

    yield make
    for running in reversed(started):
        await running.stop()


@pytest.fixture
async def simple(live: LiveFactory, standin: ComfyStandIn) -> LiveBridge:
    """A bridge without slots (no arbiter: always generation), on the in-process ComfyUI stand-in."""
    return await live(standin.url)


@pytest.fixture
async def with_slots(live: LiveFactory) -> LiveBridge:
    """A bridge with an arbiter and real slot processes; starts in inference, ComfyUI not yet up."""
    comfy_port = free_port()
    return await live(f"http://127.0.0.1:{comfy_port}", slots=process_slots(comfy_port))
