"""Fault injection on the image path: ComfyUI killed mid-render, its websocket going silent, an
unwritable image cache, and the HTTP client walking away mid-render.

Each fault gets one test, against real processes where the fault needs one (a SIGKILLed stand-in,
the daemon as ``python -m hal0_bridge`` for what only the production server shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.config import Config

from tests.daemon.conftest import FAST_COMFYUI, make_config
from tests.support.comfyui_standin import ComfyStandIn, StandInProcess, free_port

GEN = "/v1/images/generations"
REPO = Path(__file__).resolve().parents[3]
RENDER_TIMEOUT = 60.0  # far beyond what any fault below may take to surface
GUARD = 30.0  # a fault that is never noticed must fail the test, not hang it
LONG_RENDER = {"prompt": "a slow lighthouse", "size": "64x64", "steps": 50}  # 50 steps x STEP_SECONDS
STEP_SECONDS = 0.2


async def until(check: Callable[[], Awaitable[bool]], what: str, guard: float = GUARD) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``guard`` seconds."""

    async def loop() -> None:
        while not await check():
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(loop(), guard)
    except TimeoutError:
        pytest.fail(f"gave up waiting: {what}")


async def standin_state(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(f"{url}/_standin/state") as resp:
        return await resp.json()


async def status(api: TestClient) -> dict[str, Any]:
    return await (await api.get("/api/comfyui/status")).json()


# ------------------------------------------------------------------------------- ComfyUI killed mid-render


@pytest.fixture
async def comfy_process() -> AsyncIterator[StandInProcess]:
    proc = StandInProcess(port=free_port(), step_seconds=STEP_SECONDS)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


async def test_comfyui_killed_mid_render_fails_the_request_fast_and_the_next_one_works(
    aiohttp_client: Any, tmp_path: Path, comfy_process: StandInProcess
) -> None:
    config = make_config(tmp_path, comfy_process.url, comfyui={"render_timeout": RENDER_TIMEOUT})
    api = await aiohttp_client(create_app(config))
    async with aiohttp.ClientSession() as session:
        render = asyncio.create_task(api.post(GEN, json=LONG_RENDER))

        async def rendering() -> bool:
            return (await standin_state(session, comfy_process.url))["counters"]["prompts_started"] == 1

        await until(rendering, "the render to start in ComfyUI")
        assert comfy_process.proc is not None
        comfy_process.proc.kill()  # SIGKILL: no goodbye on the socket, no history, nothing
        killed = time.monotonic()
        resp = await asyncio.wait_for(render, GUARD)
        waited = time.monotonic() - killed

    body = await resp.json()
    assert resp.status in (502, 503), body
    assert body["error"]["code"] in ("image.upstream_failed", "image.engine_unavailable")
    assert waited < RENDER_TIMEOUT / 4  # noticed from the dead engine, not from the render timeout

    await comfy_process.stop()
    revived = StandInProcess(port=comfy_process.port)
    await revived.start()
    try:
        await until(lambda: _reachable(api), "the bridge to see ComfyUI again")
        again = await api.post(GEN, json={"prompt": "after the crash", "size": "64x64"})
        assert again.status == 200, await again.text()
    finally:
        await revived.stop()


async def _reachable(api: TestClient) -> bool:
    return (await status(api))["reachable"]


# ------------------------------------------------------------------------------- silent websocket


async def test_websocket_going_silent_mid_render_still_completes_through_history(
    aiohttp_client: Any, bridge_config: Callable[..., Config], standin: ComfyStandIn
) -> None:
    api = await aiohttp_client(create_app(bridge_config(comfyui={"render_timeout": RENDER_TIMEOUT})))
    await until(lambda: _reachable(api), "the bridge to see ComfyUI")
    standin.settings.step_seconds = 0.05
    render = asyncio.create_task(api.post(GEN, json={**LONG_RENDER, "steps": 30}))

    async def rendering() -> bool:
        return standin.counters.prompts_started == 1

    await until(rendering, "the render to start")
    connects = standin.counters.ws_connects
    standin.settings.ws_silent = True  # the bridge's next socket is accepted and never spoken to
    await standin.drop_websockets()
    resp = await asyncio.wait_for(render, GUARD)

    body = await resp.json()
    assert resp.status == 200, body
    assert standin.counters.ws_connects > connects  # it was connected (silent), not cut off
    assert standin.counters.history_requests >= 1
    image = await api.get(body["data"][0]["url"])
    assert image.status == 200 and image.content_type == "image/png"


# ------------------------------------------------------------------------------- unwritable cache


async def test_unwritable_cache_is_507_status_keeps_serving_and_a_fixed_dir_works_again(
    aiohttp_client: Any, bridge_config: Callable[..., Config]
) -> None:
    config = bridge_config()
    api = await aiohttp_client(create_app(config))
    cache_dir = config.image.cache_dir
    # as root chmod blocks nothing: a regular file where the directory was cannot be written into
    shutil.rmtree(cache_dir)
    cache_dir.write_bytes(b"not a directory")

    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
    body = await resp.json()
    assert resp.status == 507, body
    assert body["error"]["code"] == "image.cache_write_failed"
    assert body["error"]["details"]["cache_dir"] == str(cache_dir)
    assert (await api.get("/api/comfyui/status")).status == 200
    assert (await api.get("/api/info")).status == 200

    cache_dir.unlink()  # the operator fixes it
    again = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
    assert again.status == 200, await again.text()
    image = await api.get((await again.json())["data"][0]["url"])
    assert image.status == 200


# ------------------------------------------------------------------------------- client walks away


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path, comfy_url: str) -> AsyncIterator[str]:
    """The real daemon (``python -m hal0_bridge``, i.e. ``serve()``), as users run it; yields its URL."""
    port = free_port()
    cfg = tmp_path / "bridge.toml"
    comfy = "\n".join(f"{k} = {v}" for k, v in {**FAST_COMFYUI, "render_timeout": RENDER_TIMEOUT}.items())
    cfg.write_text(
        f'[server]\nport = {port}\nstate_dir = "{tmp_path / "state"}"\n'
        f'[comfyui]\nurl = "{comfy_url}"\n{comfy}\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hal0_bridge", "--config", str(cfg), "--log-level", "WARNING", cwd=REPO
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def answering() -> bool:
                try:
                    async with session.get(f"{url}/api/info") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await until(answering, "the daemon to listen")
        yield url
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), GUARD)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _walk_away_mid_render(url: str, standin: ComfyStandIn) -> None:
    """Start a long render, wait until ComfyUI runs it, then drop the connection."""
    standin.settings.step_seconds = STEP_SECONDS
    session = aiohttp.ClientSession()
    render = asyncio.create_task(session.post(f"{url}{GEN}", json=LONG_RENDER))

    async def rendering() -> bool:
        return standin.counters.prompts_started == 1

    try:
        await until(rendering, "the render to start")
    finally:
        render.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await render
        await session.close()  # the socket is gone: the bridge sees the client disconnect


async def _render_outcome(standin: ComfyStandIn) -> str:
    """How the render ended in ComfyUI: interrupted, or (left running for nobody) succeeded."""

    async def ended() -> bool:
        c = standin.counters
        return bool(c.prompts_interrupted or c.prompts_succeeded or c.prompts_failed)

    await until(ended, "the abandoned render to end one way or the other")
    c = standin.counters
    return "interrupted" if c.prompts_interrupted else "succeeded" if c.prompts_succeeded else "failed"


async def test_client_disconnecting_mid_render_interrupts_it_in_comfyui(tmp_path: Path, standin: ComfyStandIn) -> None:
    async with daemon(tmp_path, standin.url) as url:
        await _walk_away_mid_render(url, standin)
        assert await _render_outcome(standin) == "interrupted"
        assert standin.queue.remaining() == 0


async def test_client_disconnecting_mid_render_interrupts_it_when_the_server_cancels_handlers(
    aiohttp_client: Any, bridge_config: Callable[..., Config], standin: ComfyStandIn
) -> None:
    # aiohttp's test server cancels handlers on disconnect (what serve() should do too, see above):
    # this is the bridge's half of the job, the abandon path in ComfyUI.render
    api = await aiohttp_client(create_app(bridge_config(comfyui={"render_timeout": RENDER_TIMEOUT})))
    await _walk_away_mid_render(str(api.make_url("")).rstrip("/"), standin)
    assert await _render_outcome(standin) == "interrupted"
    assert standin.queue.remaining() == 0
    assert (await api.get("/api/comfyui/status")).status == 200


# ------------------------------------------------------------------------------- a render without an image


WS_ONLY_TEMPLATE = """{
  "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": {{ checkpoint }}}},
  "6": {"class_type": "CLIPTextEncode", "inputs": {"text": {{ prompt }}, "clip": ["4", 1]}},
  "7": {"class_type": "CLIPTextEncode", "inputs": {"text": {{ negative_prompt }}, "clip": ["4", 1]}},
  "5": {"class_type": "EmptyLatentImage", "inputs": {"width": {{ width }}, "height": {{ height }}, "batch_size": 1}},
  "3": {"class_type": "KSampler", "inputs": {"seed": {{ seed }}, "steps": {{ steps }}, "cfg": {{ cfg }},
        "sampler_name": {{ sampler }}, "scheduler": {{ scheduler }}, "denoise": 1.0, "model": ["4", 0],
        "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
  "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
  "9": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["8", 0]}}
}
"""


async def test_render_that_records_no_image_is_502_not_an_empty_data_list(
    aiohttp_client: Any, tmp_path: Path, standin: ComfyStandIn
) -> None:
    """ComfyUI succeeds but its history lists no image file (here: SaveImageWebsocket, whose PNG is only a
    binary frame): the answer is 502 image.upstream_failed, never 200 with ``data: []``."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "ws-only.json.j2").write_text(WS_ONLY_TEMPLATE)
    config = make_config(
        tmp_path, standin.url,
        image={"template_dir": str(templates)},
        models={"ws-only": {"template": "ws-only", "checkpoint": "v1-5-pruned-emaonly.safetensors", "steps": 1}},
    )  # fmt: skip
    api = await aiohttp_client(create_app(config))

    resp = await api.post(GEN, json={"prompt": "a lighthouse", "model": "ws-only", "size": "64x64"})

    assert resp.status == 502, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == "image.upstream_failed"
    assert "without recording an image" in body["error"]["message"]
    assert standin.counters.prompts_succeeded == 1  # ComfyUI itself was happy
