"""Make docs/images/home-assistant-dashboard.png: the real Home Assistant frontend showing
docs/home-assistant-dashboard.yaml for a real bridge (process slots, the ComfyUI stand-in).

Needs Home Assistant's frontend and a few requirements of components the frontend's websocket API
imports, none of which the test harness installs (versions from the manifests of Home Assistant
2026.2.3)::

    .venv/bin/pip install --no-deps home-assistant-frontend==20260128.6 mutagen==1.47.0 \
        ha-ffmpeg==3.2.2 pymicro-vad==1.0.1 pyspeex-noise==1.0.2

Then: ``.venv/bin/python -m tests.support.ha_dashboard_screenshot [OUT.png]``. (Onboarding sets up
Google Translate TTS, whose ``gtts`` import error in the log is harmless for the picture.)

What it does: starts the bridge (node_id ``strix``, the dashboard's), a Home Assistant process with
``frontend``, the dashboard in YAML mode, the package docs/home-assistant-generate.yaml and
custom_components/hal0; finishes onboarding over Home Assistant's REST API, adds the hal0 entry
through the config flow, switches to generation and renders an image, then opens the dashboard in
Debian's chromium with the onboarding user's tokens and takes a screenshot.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

from tests.support.live_bridge import REPO, LiveBridge, free_port, launch_chromium, process_slots, save_small_png

OUT = REPO / "docs" / "images" / "home-assistant-dashboard.png"
WAIT_S = 120.0

CONFIGURATION = """
homeassistant:
  name: Home
  unit_system: metric
  time_zone: UTC
  packages: !include_dir_named packages
http:
  server_host: 127.0.0.1
  server_port: {port}
frontend:
lovelace:
  mode: storage
  dashboards:
    dashboard-hal0:
      mode: yaml
      filename: hal0-dashboard.yaml
      title: hal0
      icon: mdi:expansion-card
      show_in_sidebar: true
logger:
  default: warning
"""


async def wait_http(session: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            async with session.get(url) as resp:
                if resp.status < 500:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.5)
    raise TimeoutError(url)


async def onboard(session: aiohttp.ClientSession, ha: str) -> dict[str, Any]:
    """The onboarding steps the frontend would do, then the user's tokens."""
    client_id = ha + "/"
    async with session.post(f"{ha}/api/onboarding/users", json={
        "client_id": client_id, "name": "Owner", "username": "owner", "password": "hal0-screenshot",
        "language": "en",
    }) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
        code = (await resp.json())["auth_code"]
    async with session.post(f"{ha}/auth/token", data={
        "grant_type": "authorization_code", "code": code, "client_id": client_id,
    }) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()
        tokens: dict[str, Any] = await resp.json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    for step, body in (("core_config", {}), ("analytics", {}),
                       ("integration", {"client_id": client_id, "redirect_uri": client_id})):  # fmt: skip
        async with session.post(f"{ha}/api/onboarding/{step}", json=body, headers=auth) as resp:
            assert resp.status == 200, (step, await resp.text())
    return tokens


async def add_entry(session: aiohttp.ClientSession, ha: str, auth: dict[str, str], bridge: LiveBridge) -> None:
    async with session.post(f"{ha}/api/config/config_entries/flow", json={"handler": "hal0"}, headers=auth) as resp:
        flow = await resp.json()
        assert resp.status == 200, flow
    data = {"host": "127.0.0.1", "port": bridge.port, "token": ""}
    async with session.post(f"{ha}/api/config/config_entries/flow/{flow['flow_id']}", json=data, headers=auth) as resp:
        result = await resp.json()
        assert result.get("type") == "create_entry", result


async def main(out: Path) -> None:
    comfy_port, ha_port = free_port(), free_port()
    ha = f"http://127.0.0.1:{ha_port}"
    with tempfile.TemporaryDirectory(prefix="hal0-ha-shot-") as tmp:
        root = Path(tmp)
        bridge = LiveBridge({
            "server": {"state_dir": str(root / "bridge")},
            "comfyui": {"url": f"http://127.0.0.1:{comfy_port}", "probe_interval": 0.2},
            "image": {"idle_restore_minutes": 30},
            "slots": process_slots(comfy_port),
            "mqtt": {"node_id": "strix"},
        })  # fmt: skip
        config = root / "ha"
        (config / "custom_components").mkdir(parents=True)
        (config / "packages").mkdir()
        shutil.copytree(REPO / "custom_components" / "hal0", config / "custom_components" / "hal0")
        shutil.copy(REPO / "docs" / "home-assistant-generate.yaml", config / "packages" / "hal0.yaml")
        shutil.copy(REPO / "docs" / "home-assistant-dashboard.yaml", config / "hal0-dashboard.yaml")
        (config / "configuration.yaml").write_text(CONFIGURATION.format(port=ha_port))
        await bridge.start()
        hass = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "homeassistant", "-c", str(config), "--skip-pip", cwd=tmp,
            stdout=(root / "ha.log").open("wb"), stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        try:
            async with aiohttp.ClientSession() as session:
                await wait_http(session, f"{ha}/api/onboarding")
                tokens = await onboard(session, ha)
                auth = {"Authorization": f"Bearer {tokens['access_token']}"}
                await add_entry(session, ha, auth, bridge)
                async with session.post(f"{bridge.url}/api/comfyui/switchover", json={"mode": "generation"}) as r:
                    assert r.status == 202, await r.text()
                async with session.post(f"{bridge.url}/v1/images/generations",
                                        json={"prompt": "a lighthouse at dusk", "size": "512x512"}) as r:  # fmt: skip
                    assert r.status == 200, await r.text()
                await asyncio.sleep(2)  # the integration hears image_generated over SSE
            hass_tokens = {**tokens, "hassUrl": ha, "clientId": ha + "/", "expires": int(time.time() * 1000) + 1800_000}
            async with async_playwright() as pw:
                browser = await launch_chromium(pw)
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                # the frontend keeps its tokens in localStorage; set them before its first script runs
                await page.add_init_script(f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(hass_tokens))})")
                await page.goto(f"{ha}/dashboard-hal0/hal0")
                await page.wait_for_timeout(8000)  # the frontend loads its chunks and draws the cards
                save_small_png(await page.screenshot(), out)
                await browser.close()
        finally:
            if hass.returncode is None:
                os.killpg(hass.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(hass.wait(), 30)
                except TimeoutError:
                    os.killpg(hass.pid, signal.SIGKILL)
            await bridge.stop()
            print((root / "ha.log").read_text()[-3000:], file=sys.stderr)
    print(f"wrote {out}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
