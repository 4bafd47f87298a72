"""The Image-Gen page in a real headless Chromium against a real bridge: the stand-in's numbers in the
gauges, a switch clicked through to generation, a render in the gallery, the offline banner, the
token prompt, API errors with their message, and a phone-sized screen. A screenshot per state goes to
the test's tmp dir and is checked as a non-blank PNG of the expected size."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image
from playwright.async_api import Browser, Page, Request, expect

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.live_bridge import LiveBridge

from .conftest import PHONE, VIEWPORT

GIB = 2**30
WAIT_MS = 30_000  # bound against hanging (a switch starts real processes), never a speed assertion


def check_png(path: Path, size: dict[str, int]) -> None:
    """A PNG of exactly ``size`` that shows something: more than a handful of colours."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        assert image.size == (size["width"], size["height"]), (path, image.size)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 20, f"{path.name}: blank ({len(colours)} colours)"


async def shot(page: Page, tmp_path: Path, name: str, size: dict[str, int] = VIEWPORT) -> Path:
    """A viewport screenshot of the current state into the test's tmp dir, checked."""
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path))
    check_png(path, size)
    return path


async def open_page(page: Page, bridge: LiveBridge) -> None:
    await page.goto(bridge.url + "/")
    await expect(page.locator("#conn")).to_have_class("dot on", timeout=WAIT_MS)


def gib(value: int) -> str:
    return f"{value / GIB:.1f}"


# ------------------------------------------------------------------------------- what it shows


async def test_gauges_show_the_standins_numbers(
    page: Page, simple: LiveBridge, standin: ComfyStandIn, tmp_path: Path
) -> None:
    standin.settings.ram_total = 128 * GIB
    standin.settings.ram_free = 100 * GIB
    await open_page(page, simple)
    hub = simple.bridge.hub

    ram = f"{gib(28 * GIB)} / {gib(128 * GIB)} GiB"
    await expect(page.locator("#ram-text")).to_have_text(ram, timeout=WAIT_MS)
    memory = hub.status.memory  # GTT: amdgpu sysfs where the host has it, else the stand-in's device
    assert memory.gtt_used is not None and memory.gtt_total is not None
    await expect(page.locator("#gtt-text")).to_have_text(f"{gib(memory.gtt_used)} / {gib(memory.gtt_total)} GiB")
    assert await page.locator("#ram-bar").evaluate("m => m.value") == 28 / 128
    await expect(page.locator("#mode")).to_have_text("generation")
    await expect(page.locator("#engine")).to_have_text("running")
    await expect(page.locator("#reachable")).to_have_text("yes")
    await expect(page.locator("#queue-running")).to_have_text("0")
    await shot(page, tmp_path, "gauges")


async def test_a_switch_clicked_reaches_generation_without_a_reload(
    page: Page, with_slots: LiveBridge, tmp_path: Path
) -> None:
    await open_page(page, with_slots)
    await expect(page.locator("#mode")).to_have_text("inference")
    await expect(page.locator("#slots li[data-slot=llm] .state-ready")).to_have_text("ready", timeout=WAIT_MS)
    await page.evaluate("window.__same_document = true")
    await shot(page, tmp_path, "inference")

    await page.click("#switch-btn")

    await expect(page.locator("#mode")).to_have_text("generation", timeout=WAIT_MS)
    await expect(page.locator("#history li").first).to_contain_text("→ generation (api) ok", timeout=WAIT_MS)
    await expect(page.locator("#slots li[data-slot=img] .state-ready")).to_have_text("ready", timeout=WAIT_MS)
    await expect(page.locator("#slots li[data-slot=llm] span").last).to_have_text("offline")
    assert with_slots.bridge.hub.status.mode == "generation"
    assert await page.evaluate("window.__same_document") is True  # the page was never reloaded
    assert "drain" in await page.locator("#history li .phases").first.inner_text()
    await expect(page.locator("#switch-btn")).to_have_text("Switch to inference")
    await shot(page, tmp_path, "generation")


async def test_a_generated_image_appears_in_the_gallery(page: Page, simple: LiveBridge, tmp_path: Path) -> None:
    await open_page(page, simple)

    await page.fill("#prompt", "a lighthouse at dusk")
    await page.fill("#size", "64x64")
    await page.click("#generate-btn")

    thumb = page.locator("#gallery img").first
    await expect(thumb).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#notice")).to_contain_text("image ready")
    await page.wait_for_function("() => document.querySelector('#gallery img').naturalWidth === 64")
    await shot(page, tmp_path, "gallery")
    await thumb.click()
    await expect(page.locator("#viewer")).to_be_visible()
    assert (await page.locator("#viewer-img").get_attribute("src") or "").startswith("/api/images/cache/")


async def test_an_image_from_another_client_appears_too(page: Page, simple: LiveBridge) -> None:
    await open_page(page, simple)

    async with aiohttp.ClientSession() as session:
        async with session.post(simple.url + "/v1/images/generations", json={"prompt": "x", "size": "64x64"}) as resp:
            body = await resp.json()

    url = body["_hal0"]["urls"][0]
    await expect(page.locator(f'#gallery img[src="{url}"]')).to_have_count(1, timeout=WAIT_MS)


async def test_progress_shows_the_running_render(page: Page, simple: LiveBridge, standin: ComfyStandIn) -> None:
    standin.settings.step_seconds = 0.1
    await open_page(page, simple)

    async with aiohttp.ClientSession() as session:
        render = asyncio.ensure_future(
            session.post(simple.url + "/v1/images/generations", json={"prompt": "x", "size": "64x64", "steps": 30})
        )
        await expect(page.locator("#progress-text")).to_contain_text("/ 30", timeout=WAIT_MS)
        await expect(page.locator("#engine")).to_have_text("generating")
        await expect(page.locator("#rate")).to_contain_text("it/s")
        await expect(page.locator("#cancel-btn")).to_be_enabled()
        await page.click("#cancel-btn")
        await expect(page.locator("#notice")).to_contain_text("1 interrupted")
        async with await render as resp:
            assert resp.status == 502  # the interrupted render fails for its client
    await expect(page.locator("#progress-text")).to_have_text("idle", timeout=WAIT_MS)
    await expect(page.locator("#last-failure")).to_contain_text("render failed")


# ------------------------------------------------------------------------------- when things go wrong


async def test_offline_banner_comes_and_goes_with_the_bridge(page: Page, simple: LiveBridge, tmp_path: Path) -> None:
    await open_page(page, simple)
    banner = page.locator("#banner")
    await expect(banner).to_be_hidden()

    await simple.stop()

    await expect(banner).to_be_visible(timeout=WAIT_MS)
    await expect(banner).to_have_text("bridge offline — reconnecting…")
    await expect(page.locator("#switch-btn")).to_be_disabled()
    await shot(page, tmp_path, "offline")

    await simple.start()

    await expect(banner).to_be_hidden(timeout=WAIT_MS)
    await expect(page.locator("#mode")).to_have_text("generation")
    await shot(page, tmp_path, "back")


async def test_an_api_error_is_shown_with_its_message(page: Page, simple: LiveBridge) -> None:
    await open_page(page, simple)

    await page.click("#pin-btn")  # no img slot, so no arbiter: 503 comfyui.arbiter_unavailable

    notice = page.locator("#notice")
    await expect(notice).to_contain_text("no img slot is configured, so there is no GPU arbiter")
    await expect(notice.locator("code")).to_have_text("comfyui.arbiter_unavailable")


async def test_a_bad_prompt_shows_the_validation_message(page: Page, simple: LiveBridge) -> None:
    await open_page(page, simple)

    await page.fill("#prompt", "x")
    await page.fill("#size", "65x65")
    await page.evaluate("document.getElementById('size').removeAttribute('pattern')")  # what the API says, not the form
    await page.click("#generate-btn")

    await expect(page.locator("#notice code")).to_have_text("image.invalid_size", timeout=WAIT_MS)


async def test_with_a_token_the_page_asks_once_and_sends_it(
    browser: Browser, live: Any, standin: ComfyStandIn, tmp_path: Path
) -> None:
    bridge = await live(standin.url, server={"token": "page-token-123"})
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    posts: list[Request] = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
    await page.goto(bridge.url + "/")
    await expect(page.locator("#token-dialog")).to_be_visible(timeout=WAIT_MS)
    await shot(page, tmp_path, "token")

    await page.fill("#token-input", "page-token-123")
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#conn")).to_have_class("dot on", timeout=WAIT_MS)
    await page.click("#pin-btn")

    # the bridge took the token (a 401 would ask again): the answer is the no-arbiter 503
    await expect(page.locator("#notice code")).to_have_text("comfyui.arbiter_unavailable")
    assert posts and posts[-1].headers["authorization"] == "Bearer page-token-123"
    assert posts[-1].headers["content-type"] == "application/json"
    assert await page.evaluate("sessionStorage.getItem('hal0.token')") == "page-token-123"

    await page.reload()  # kept for the tab's session: not asked again
    await expect(page.locator("#conn")).to_have_class("dot on", timeout=WAIT_MS)
    await expect(page.locator("#token-dialog")).to_be_hidden()
    await context.close()


async def test_a_wrong_token_is_asked_again(browser: Browser, live: Any, standin: ComfyStandIn) -> None:
    bridge = await live(standin.url, server={"token": "right-token"})
    context = await browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(bridge.url + "/")
    await page.fill("#token-input", "wrong-token")
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#token-dialog")).to_be_hidden()

    # the event stream needs the token too (docs/security.md): the bridge refuses it, the page asks again
    await expect(page.locator("#token-dialog")).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#token-reason")).to_contain_text("refused the event stream; check the token")
    await expect(page.locator("#banner")).to_be_visible()
    await context.close()


# ------------------------------------------------------------------------------- phone


async def test_a_phone_sized_screen_needs_no_sideways_scrolling(
    browser: Browser, simple: LiveBridge, tmp_path: Path
) -> None:
    context = await browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)  # type: ignore[arg-type]
    page = await context.new_page()
    await open_page(page, simple)
    await expect(page.locator("#ram-text")).not_to_have_text("—", timeout=WAIT_MS)

    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = await page.locator("#generate-btn").bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    await shot(page, tmp_path, "phone", PHONE)
    await context.close()


@pytest.mark.parametrize(
    ("image", "size"),
    [(Image.new("RGB", (1280, 900), (20, 22, 26)), VIEWPORT), (Image.effect_noise((390, 844), 60), VIEWPORT)],
    ids=["flat", "wrong_size"],
)
def test_the_screenshot_check_can_fail(image: Image.Image, size: dict[str, int], tmp_path: Path) -> None:
    image.save(tmp_path / "x.png")
    with pytest.raises(AssertionError):
        check_png(tmp_path / "x.png", size)
