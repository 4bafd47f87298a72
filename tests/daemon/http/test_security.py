"""Security basics: no token off loopback, bearer auth on writes and /v1, reads stay open."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.config import ConfigError, build

TOKEN = "s3cret-token"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "gpu-box.lan"])
def test_non_loopback_without_token_refuses_to_start(tmp_path: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="server.token"):
        create_app(build({"server": {"host": host, "state_dir": str(tmp_path)}}))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_without_token_is_fine(tmp_path: Path, host: str) -> None:
    create_app(build({"server": {"host": host, "state_dir": str(tmp_path)}}))


def test_daemon_process_exits_2_on_open_bind_without_token(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[server]\nhost = "0.0.0.0"\nport = 0\nstate_dir = "{tmp_path}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "hal0_bridge", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "server.token" in proc.stderr


@pytest.fixture
async def secured(aiohttp_client: Any, bridge_config: Any) -> TestClient:
    return await aiohttp_client(create_app(bridge_config(server={"token": TOKEN})))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/comfyui/switchover", {"mode": "generation"}),
        ("POST", "/api/comfyui/pin", {"pinned": True}),
        ("POST", "/api/comfyui/cancel", {}),
        ("POST", "/v1/images/generations", {"prompt": "x"}),
        ("GET", "/v1/models", None),
    ],
)
@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic czNjcmV0LXRva2Vu", f"Bearer {TOKEN}x", "Bearer"])
async def test_protected_routes_need_the_token(
    secured: TestClient, method: str, path: str, body: Any, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    resp = await secured.request(method, path, json=body, headers=headers)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "auth.unauthorized"


async def test_the_right_token_is_accepted(secured: TestClient) -> None:
    resp = await secured.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200
    resp = await secured.post(
        "/v1/images/generations", json={"prompt": "x", "size": "64x64"}, headers={"Authorization": f"bearer {TOKEN}"}
    )
    assert resp.status == 200


@pytest.mark.parametrize("path", ["/api/comfyui/status", "/api/info"])
async def test_reads_stay_open(secured: TestClient, path: str) -> None:
    assert (await secured.get(path)).status == 200


async def test_info_never_leaks_the_token(secured: TestClient) -> None:
    text = await (await secured.get("/api/info")).text()
    assert TOKEN not in text
    assert '"auth_required":true' in text
