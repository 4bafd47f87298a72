"""``/comfyui/``: ComfyUI's UI and API through the bridge — passed through as sent, Origin made ComfyUI's
own, a prompt posted through it switches the GPU first, a websocket alone never does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.http.server import BRIDGE_KEY, session_value

from tests.daemon.conftest import arbiter_config
from tests.support.comfyui_standin import CAPTURES, WEB_ROOT, ComfyStandIn
from tests.support.pictures import noisy

HANG_GUARD = 30.0
BROWSER_ORIGIN = "http://hal0.lan:8080"  # the bridge's page, as a browser names it (server.public_url)
BROWSER = {"Origin": BROWSER_ORIGIN, "Host": "hal0.lan:8080"}


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


@pytest.fixture
async def lan(aiohttp_client: Any, bridge_config: Any) -> TestClient:
    """The bridge as a browser on the LAN reaches it: its name is server.public_url."""
    return await aiohttp_client(create_app(bridge_config(server={"public_url": BROWSER_ORIGIN})))


async def test_a_browser_origin_is_accepted_by_comfyui_behind_the_proxy(lan: TestClient, standin: ComfyStandIn) -> None:
    async with aiohttp.ClientSession() as direct:  # the same request straight to ComfyUI is refused
        async with direct.post(f"{standin.url}/api/prompt", json={"prompt": example_graph()},
                               headers={"Origin": BROWSER_ORIGIN}) as resp:  # fmt: skip
            assert resp.status == 403  # a browser Origin on ComfyUI's loopback Host
    resp = await lan.post("/comfyui/api/prompt", json={"prompt": example_graph()}, headers=BROWSER)
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


async def test_the_websocket_passes_comfyuis_messages_both_ways(lan: TestClient, standin: ComfyStandIn) -> None:
    api = lan
    standin.settings.preview_method = "latent2rgb"
    async with api.session.ws_connect(api.make_url("/comfyui/ws?clientId=ui-1"), headers=BROWSER) as ws:
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


async def test_a_browser_opens_a_session_once_with_the_token_in_the_url(
    aiohttp_client: Any, bridge_config: Any
) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": "t0ken-for-the-proxy"})))
    refused = await api.get("/comfyui/?token=wrong")
    assert refused.status == 401 and "?token=" in (await refused.json())["error"]["message"]
    assert "hal0_session" not in refused.cookies

    opened = await api.get("/comfyui/?token=t0ken-for-the-proxy&tab=queue", allow_redirects=False)

    assert opened.status == 303 and opened.headers["Location"] == "/comfyui/?tab=queue"  # the token leaves the URL
    cookie = opened.cookies["hal0_session"]
    assert cookie.value and "t0ken" not in cookie.value  # derived from the token, not the token
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/comfyui"
    page = await api.get("/comfyui/")  # the client's cookie jar now sends the session, no header
    assert page.status == 200 and page.content_type == "text/html"
    async with api.session.ws_connect(api.make_url("/comfyui/ws?clientId=ui-2")) as ws:  # the UI's websocket too
        assert (await asyncio.wait_for(ws.receive_json(), HANG_GUARD))["type"] == "status"
    # the session opens ComfyUI's UI only: every other route still wants the token itself
    assert (await api.get("/api/openapi.json")).status == 401
    assert (await api.post("/api/comfyui/cancel", json={})).status == 401


async def test_a_session_of_another_token_opens_nothing(aiohttp_client: Any, bridge_config: Any) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": "the-new-token-0123"})))
    old = session_value("the-old-token-0123")
    resp = await api.get("/comfyui/", headers={"Cookie": f"hal0_session={old}"})
    assert resp.status == 401
    ok = await api.get("/comfyui/", headers={"Cookie": f"hal0_session={session_value('the-new-token-0123')}"})
    assert ok.status == 200


# ------------------------------------------------------------------------------ with the GPU arbiter




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
