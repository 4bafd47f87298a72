"""``/comfyui/``: ComfyUI's UI and API through the bridge — passed through as sent, Origin made ComfyUI's
own, a prompt posted through it switches the GPU first, a websocket alone never does."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge import config as config_mod
from hal0_bridge.app import create_app
from hal0_bridge.config import Config
from hal0_bridge.http.server import BRIDGE_KEY

from tests.daemon.conftest import FAST_COMFYUI
from tests.support import fake_llama
from tests.support.comfyui_standin import CAPTURES, WEB_ROOT, ComfyStandIn
from tests.support.pictures import noisy

REPO = Path(__file__).resolve().parents[3]
HANG_GUARD = 30.0
BROWSER_ORIGIN = "http://hal0.lan:8080"  # the bridge's page, as a browser names it


def example_graph() -> dict[str, Any]:
    return json.loads((CAPTURES / "prompt_request_example.json").read_text())["prompt"]


async def test_the_bare_prefix_redirects_to_the_slash(api: TestClient) -> None:
    resp = await api.get("/comfyui?x=1", allow_redirects=False)
    assert resp.status == 308 and resp.headers["Location"] == "/comfyui/?x=1"


async def test_the_index_page_and_its_assets_come_through_with_comfyuis_headers(api: TestClient) -> None:
    resp = await api.get("/comfyui/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert await resp.text() == (WEB_ROOT / "index.html").read_text()
    assert (resp.headers["Cache-Control"], resp.headers["Pragma"]) == ("no-cache", "no-cache")
    asset = next(p for p in (WEB_ROOT / "assets").iterdir() if p.suffix == ".js")
    script = await api.get(f"/comfyui/assets/{asset.name}")
    assert script.status == 200 and await script.read() == asset.read_bytes()
    assert script.headers["Cache-Control"] == "no-cache" and "Etag" in script.headers


async def test_api_answers_and_query_strings_pass_through(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.get("/comfyui/api/system_stats")
    assert resp.status == 200 and "system" in await resp.json()
    missing = await api.get("/comfyui/view", params={"filename": "nope.png", "type": "output"})
    assert missing.status == 404 and await missing.read() == b""  # ComfyUI's own empty 404, not our envelope
    traversal = await api.get("/comfyui/view", params={"filename": "../../etc/passwd"})
    assert traversal.status == 400


async def test_a_browser_origin_is_accepted_by_comfyui_behind_the_proxy(api: TestClient, standin: ComfyStandIn) -> None:
    headers = {"Origin": BROWSER_ORIGIN}
    async with aiohttp.ClientSession() as direct:  # the same request straight to ComfyUI is refused
        async with direct.post(f"{standin.url}/api/prompt", json={"prompt": example_graph()}, headers=headers) as resp:
            assert resp.status == 403
    resp = await api.post("/comfyui/api/prompt", json={"prompt": example_graph()}, headers=headers)
    assert resp.status == 200, await resp.text()
    assert "prompt_id" in await resp.json()


async def test_uploads_bigger_than_a_json_body_pass_through(api: TestClient, standin: ComfyStandIn) -> None:
    big = noisy(400, 400)
    assert len(big) > api.app[BRIDGE_KEY].config.server.max_body_bytes
    form = aiohttp.FormData()
    form.add_field("image", big, filename="big.png", content_type="image/png")
    resp = await api.post("/comfyui/upload/image", data=form)
    assert resp.status == 200 and (await resp.json())["name"] == "big.png"
    assert (standin.input_dir / "big.png").read_bytes() == big


async def test_comfyuis_own_errors_are_passed_on_unchanged(api: TestClient) -> None:
    resp = await api.post("/comfyui/prompt", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 500 and "Server got itself in trouble" in await resp.text()


async def test_comfyui_down_is_our_503(api: TestClient, standin: ComfyStandIn) -> None:
    await standin.stop()
    resp = await api.get("/comfyui/queue")
    body = await resp.json()
    assert resp.status == 503 and body["error"]["code"] == "image.engine_unavailable"
    assert resp.headers["Retry-After"].isdigit()


async def test_the_websocket_passes_comfyuis_messages_both_ways(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.preview_method = "latent2rgb"
    async with api.session.ws_connect(api.make_url("/comfyui/ws?clientId=ui-1"), headers={"Origin": BROWSER_ORIGIN}) as ws:
        first = await asyncio.wait_for(ws.receive_json(), HANG_GUARD)
        assert first["type"] == "status" and first["data"]["sid"] == "ui-1"
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        flags = await asyncio.wait_for(ws.receive_json(), HANG_GUARD)
        assert flags["type"] == "feature_flags"  # our first message reached ComfyUI
        resp = await api.post("/comfyui/prompt", json={"prompt": example_graph(), "client_id": "ui-1"})
        prompt_id = (await resp.json())["prompt_id"]
        kinds: list[str] = []
        while True:
            msg = await asyncio.wait_for(ws.receive(), HANG_GUARD)
            if msg.type == aiohttp.WSMsgType.BINARY:
                kinds.append("binary")
                continue
            data = json.loads(msg.data)
            kinds.append(data["type"])
            if data["type"] == "executing" and data["data"]["node"] is None:
                assert data["data"]["prompt_id"] == prompt_id
                break
    assert "execution_success" in kinds and "binary" in kinds  # preview frames come through as binary


async def test_with_a_token_the_proxy_needs_it(aiohttp_client: Any, bridge_config: Any) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": "t0ken-for-the-proxy"})))
    assert (await api.get("/comfyui/")).status == 401
    ok = await api.get("/comfyui/", headers={"Authorization": "Bearer t0ken-for-the-proxy"})
    assert ok.status == 200


# ------------------------------------------------------------------------------ with the GPU arbiter


def arbiter_config(tmp_path: Path) -> Config:
    """An LLM slot (fake llama.cpp) and the stand-in as img slot, both real processes; no idle-restore."""
    llm_port, img_port = fake_llama.free_port(), fake_llama.free_port()
    timeouts = {"ready_timeout": 15.0, "stop_timeout": 2.0, "drain_timeout": 2.0, "probe_timeout": 0.5,
                "poll_interval": 0.2}
    return config_mod.build({
        "server": {"state_dir": str(tmp_path / "state")},
        "comfyui": {**FAST_COMFYUI, "url": f"http://127.0.0.1:{img_port}"},
        "image": {"idle_restore_minutes": 0},
        "slots": {
            "llm1": {"group": "llm", "backend": "process", "command": fake_llama.command(llm_port),
                     "url": f"http://127.0.0.1:{llm_port}", "ready_path": "/health", "cwd": str(REPO), **timeouts},
            "comfy": {"group": "img", "backend": "process", "cwd": str(REPO), **timeouts,
                      "command": [sys.executable, "-m", "tests.support.comfyui_standin", "--port", str(img_port)]},
        },
    })  # fmt: skip


@pytest.fixture
async def arbitrated(aiohttp_client: Any, tmp_path: Path) -> TestClient:
    app = create_app(arbiter_config(tmp_path))
    api = await aiohttp_client(app)
    bridge = app[BRIDGE_KEY]
    await bridge.slots.get("llm1").start()
    await bridge.slots.get("comfy").start()  # ComfyUI resident, as in inference mode
    assert bridge.arbiter.mode == "inference"
    return api


async def test_a_prompt_through_the_proxy_switches_to_generation_first(arbitrated: TestClient) -> None:
    bridge = arbitrated.app[BRIDGE_KEY]
    resp = await asyncio.wait_for(arbitrated.post("/comfyui/api/prompt", json={"prompt": example_graph()}), HANG_GUARD)
    assert resp.status == 200, await resp.text()
    assert bridge.arbiter.mode == "generation"
    assert bridge.hub.status.switchover.active is False
    assert {s.name: s.state for s in bridge.hub.status.slots}["llm1"] != "ready"  # the LLM gave the GPU up
    path = bridge.config.server.state_dir / "arbiter.json"
    for _ in range(300):  # recorded as the request ends (just after its answer was sent)
        if json.loads(path.read_text())["last_image_activity"] is not None:
            break
        await asyncio.sleep(0.01)
    assert json.loads(path.read_text())["last_image_activity"] is not None  # the prompt counts as image activity


async def test_a_websocket_and_reads_never_switch(arbitrated: TestClient) -> None:
    bridge = arbitrated.app[BRIDGE_KEY]
    async with arbitrated.session.ws_connect(arbitrated.make_url("/comfyui/ws?clientId=ui-2")) as ws:
        assert (await asyncio.wait_for(ws.receive_json(), HANG_GUARD))["type"] == "status"
        for path in ("/comfyui/", "/comfyui/api/queue", "/comfyui/api/history"):
            assert (await arbitrated.get(path)).status == 200
        queue = await arbitrated.post("/comfyui/api/queue", json={"clear": True})
        assert queue.status == 200
        await asyncio.sleep(0.3)
    assert bridge.arbiter.mode == "inference" and not bridge.arbiter.switching
