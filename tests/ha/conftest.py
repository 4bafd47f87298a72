"""Fixtures for the Home Assistant tests: a real hal0 bridge on a loopback port, no mocked client.

The bridge runs in the test's own event loop (aiohttp ``AppRunner`` + ``TCPSite``), so Home
Assistant talks to it over a real socket; ``socket_enabled`` lifts the harness's socket ban.
The full bridge has real process slots: the ComfyUI stand-in as the img slot and the llama.cpp
stand-in as an LLM slot, so switchovers really stop and start processes.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from pytest_homeassistant_custom_component.common import MockConfigEntry

import custom_components.hal0  # noqa: F401  # must be imported before `hass`, or IntegrationNotFound
from custom_components.hal0.const import DOMAIN

TOKEN = "test-token-0123456789"
NODE_ID = "testnode"
# How long a test waits for something the bridge does in the background (a switchover stops and
# starts real processes). Only a bound against hanging, never an assertion about speed.
WAIT_S = 60.0


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Every test may load custom_components.hal0."""


@pytest.fixture(autouse=True)
def machine_name(monkeypatch: pytest.MonkeyPatch) -> str:
    """The name the bridge reads from the machine (its display name), the same on every test machine,
    so entity ids (derived from the device name) read ``hal0_testnode_...`` everywhere."""
    monkeypatch.setattr(socket, "gethostname", lambda: NODE_ID)
    return NODE_ID


@pytest.fixture(autouse=True)
async def ai_task_ready(hass: HomeAssistant, tmp_path: Path) -> None:
    """What a real instance has for the ai_task platform: the core component and a media folder."""
    hass.config.media_dirs = {"local": str(tmp_path / "media")}
    assert await async_setup_component(hass, "homeassistant", {})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningBridge:
    """A real bridge app served on 127.0.0.1; ``stop``/``start`` keep the port, like a daemon restart."""

    raw_config: dict[str, Any]
    host: str = "127.0.0.1"
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def token(self) -> str:
        return self.raw_config.get("server", {}).get("token", "")

    @property
    def node_id(self) -> str:
        return self.raw_config["mqtt"]["node_id"]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def app(self) -> web.Application:
        assert self.runner is not None
        return self.runner.app

    @property
    def bridge(self) -> Any:
        from hal0_bridge.http.server import BRIDGE_KEY

        return self.app[BRIDGE_KEY]

    def entry_data(self, **overrides: Any) -> dict[str, Any]:
        return {CONF_HOST: self.host, CONF_PORT: self.port, CONF_TOKEN: self.token} | overrides

    async def start(self) -> None:
        from hal0_bridge.app import create_app
        from hal0_bridge.config import build

        if not self.port:
            self.port = free_port()
        config = build(self.raw_config | {"server": {**self.raw_config.get("server", {}), "port": self.port}})
        # a short shutdown grace: open SSE streams would otherwise hold a stop for a minute
        self.runner = web.AppRunner(create_app(config), shutdown_timeout=0.5, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def base_config(tmp_path: Path, *, node_id: str = NODE_ID, token: str = TOKEN) -> dict[str, Any]:
    """A bridge with no slots (no arbiter): ComfyUI is the only GPU user; ComfyUI itself is absent."""
    state = tmp_path / f"state-{node_id}"
    return {
        "server": {"host": "127.0.0.1", "token": token, "state_dir": str(state), "sse_ping_interval": 1.0},
        "comfyui": {"url": f"http://127.0.0.1:{free_port()}", "probe_interval": 0.5, "probe_timeout": 2.0},
        "image": {"idle_restore_minutes": 0},
        "mqtt": {"node_id": node_id},
    }


@pytest.fixture
async def make_bridge(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path
) -> AsyncIterator[Callable[..., Coroutine[Any, Any, RunningBridge]]]:
    """Start bridges on demand (``await make_bridge(node_id=..., token=..., config=...)``).

    After the test the hal0 entries unload first, then the bridges stop (children included).
    """
    started: list[RunningBridge] = []

    async def _make(*, config: dict[str, Any] | None = None, **kwargs: Any) -> RunningBridge:
        running = RunningBridge(config or base_config(tmp_path, **kwargs))
        await running.start()
        started.append(running)
        return running

    yield _make
    for entry in hass.config_entries.async_entries(DOMAIN):
        await hass.config_entries.async_unload(entry.entry_id)
    for running in started:
        await running.stop()


REPO = Path(__file__).resolve().parents[2]


def full_config(tmp_path: Path, *, node_id: str = NODE_ID) -> dict[str, Any]:
    """A bridge with an arbiter: the ComfyUI stand-in as the img slot, a llama.cpp stand-in as LLM slot."""
    from tests.support import fake_llama

    comfy_port, llm_port = free_port(), free_port()
    config = base_config(tmp_path, node_id=node_id)
    config["comfyui"]["url"] = f"http://127.0.0.1:{comfy_port}"
    timeouts = {"cwd": str(REPO), "ready_timeout": 30.0, "stop_timeout": 5.0, "drain_timeout": 1.0}
    config["slots"] = {
        "llm": {
            "group": "llm",
            "backend": "process",
            "command": fake_llama.command(llm_port),
            "url": f"http://127.0.0.1:{llm_port}",
            "ready_path": "/health",
            **timeouts,
        },
        "img": {
            "group": "img",
            "backend": "process",
            "command": [sys.executable, "-m", "tests.support.comfyui_standin", "--port", str(comfy_port)],
            "url": f"http://127.0.0.1:{comfy_port}",
            "ready_path": "/system_stats",
            **timeouts,
        },
    }
    return config


@pytest.fixture
async def full_bridge(make_bridge: Callable[..., Coroutine[Any, Any, RunningBridge]], tmp_path: Path) -> RunningBridge:
    """A bridge with process slots (starts in inference mode, ComfyUI not yet started).

    Its LLM slot is a process slot, so the bridge's first start runs it (a recovery switch to
    inference): the fixture returns once that has finished."""
    running = await make_bridge(config=full_config(tmp_path))
    await first_start_done(running)
    return running


async def first_start_done(running: RunningBridge) -> None:
    """Until the first start of a :func:`full_config` bridge has run its LLM slot."""
    arbiter, slots = running.bridge.arbiter, running.bridge.slots
    await wait_until(lambda: not arbiter.switching and slots.get("llm").state == "ready", "first start ran the LLM slot")


@pytest.fixture
async def bridge(make_bridge: Callable[..., Coroutine[Any, Any, RunningBridge]]) -> RunningBridge:
    """A bridge without slots (no arbiter)."""
    return await make_bridge()


def add_entry(hass: HomeAssistant, running: RunningBridge, **overrides: Any) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN, title=f"hal0 {running.node_id}", unique_id=running.node_id, data=running.entry_data(**overrides)
    )
    entry.add_to_hass(hass)
    return entry


async def setup_entry(hass: HomeAssistant, running: RunningBridge, **overrides: Any) -> MockConfigEntry:
    entry = add_entry(hass, running, **overrides)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    return entry


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait for a background effect (stream push, process start); fail with ``what`` if it never comes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.02)

