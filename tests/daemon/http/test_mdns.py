"""The API is announced over mDNS and withdrawn on stop, seen by the zeroconf library's own browser.

Everything runs on loopback: the bridge binds 127.0.0.1 with ``server.zeroconf = true`` (loopback binds
are not announced by default), and the browser listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hal0_bridge import API_VERSION, __version__
from hal0_bridge.app import create_app
from hal0_bridge.config import build
from hal0_bridge.http.mdns import SERVICE_TYPE, announce_enabled
from hal0_bridge.http.server import BRIDGE_KEY
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

WAIT_S = 15.0  # a bound against hanging; announcements on loopback arrive within a second


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Browser:
    """The zeroconf library's own browser on loopback, recording every change it reports."""

    def __init__(self) -> None:
        self.zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        self.changes: list[tuple[str, ServiceStateChange]] = []
        self.browser = AsyncServiceBrowser(self.zc.zeroconf, SERVICE_TYPE, handlers=[self._on_change])

    def _on_change(self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        self.changes.append((name, state_change))

    async def wait_for(self, change: ServiceStateChange) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while loop.time() < deadline:
            for name, seen in self.changes:
                if seen is change:
                    return name
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the browser never saw {change}: {self.changes}")

    async def close(self) -> None:
        await self.browser.async_cancel()
        await self.zc.async_close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    running = Browser()
    yield running
    await running.close()


async def _serve(tmp_path: Path, **server: Any) -> tuple[web.AppRunner, int]:
    port = free_port()
    config = build(
        {
            "server": {"host": "127.0.0.1", "port": port, "state_dir": str(tmp_path / "state"), **server},
            "comfyui": {"url": "http://127.0.0.1:9", "probe_interval": 5.0},
        }
    )
    runner = web.AppRunner(create_app(config), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_the_api_is_announced_with_node_id_and_version(browser: Browser, tmp_path: Path) -> None:
    runner, port = await _serve(tmp_path, zeroconf=True, token="mdns-test-token-0123")
    try:
        name = await browser.wait_for(ServiceStateChange.Added)
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        assert await info.async_request(browser.zc.zeroconf, 3000)
        node_id = runner.app[BRIDGE_KEY].config.node_id
    finally:
        await runner.cleanup()

    assert name == f"hal0 {socket.gethostname().replace('.', '-')}.{SERVICE_TYPE}"
    assert info.port == port
    assert info.parsed_addresses() == ["127.0.0.1"]
    assert {k.decode(): (v or b"").decode() for k, v in info.properties.items()} == {
        "node_id": node_id,
        "version": __version__,
        "api_version": str(API_VERSION),
        "auth": "1",
        "path": "/",
    }


async def test_stopping_the_bridge_withdraws_the_service(browser: Browser, tmp_path: Path) -> None:
    runner, _port = await _serve(tmp_path, zeroconf=True)
    await browser.wait_for(ServiceStateChange.Added)

    await runner.cleanup()

    await browser.wait_for(ServiceStateChange.Removed)


async def test_a_loopback_bind_is_not_announced_by_default(tmp_path: Path) -> None:
    runner, _port = await _serve(tmp_path)
    try:
        assert runner.app[BRIDGE_KEY].mdns is None
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("host", "setting", "expected"),
    [
        ("127.0.0.1", None, False),
        ("0.0.0.0", None, True),
        ("192.0.2.10", None, True),
        ("0.0.0.0", False, False),
        ("127.0.0.1", True, True),
    ],
)
def test_zeroconf_is_on_by_default_for_network_binds_only(host: str, setting: bool | None, expected: bool) -> None:
    server = build({"server": {"host": host, "token": "x" * 20, "zeroconf": setting}}).server

    assert announce_enabled(server) is expected
