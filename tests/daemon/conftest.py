"""Shared fixtures for the daemon tests: the ComfyUI stand-in and a bridge app pointed at it."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.config import Config, build

from tests.support import fake_container
from tests.support.comfyui_standin import ComfyStandIn
from tests.support.llama_fixtures import llama_binary, start_llama, tiny_model  # noqa: F401 - fixtures

FAKE_SYSTEMCTL = Path(__file__).resolve().parents[1] / "support" / "fake_systemctl"

REPO = Path(__file__).resolve().parents[2]
FAST_COMFYUI = {
    "connect_timeout": 1.0,
    "request_timeout": 3.0,
    "probe_interval": 0.2,
    "probe_timeout": 0.5,
    "render_timeout": 20.0,
    "ws_silence_timeout": 1.0,
    "history_poll_interval": 0.1,
}


@pytest.fixture
async def standin() -> AsyncIterator[ComfyStandIn]:
    comfy = ComfyStandIn()
    await comfy.start()
    try:
        yield comfy
    finally:
        await comfy.stop()


def make_config(tmp_path: Path, comfy_url: str, **sections: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {
        "server": {"state_dir": str(tmp_path / "state")},
        "comfyui": {"url": comfy_url, **FAST_COMFYUI},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return build(raw)


def arbiter_config(tmp_path: Path, *, server: dict[str, Any] | None = None, image: dict[str, Any] | None = None) -> Config:
    """An LLM slot "llm1" (fake llama.cpp) and the stand-in as img slot "comfy", both real processes;
    no idle-restore. ``server`` / ``image``: more keys for those sections."""
    from tests.support import fake_llama

    llm_port, img_port = fake_llama.free_port(), fake_llama.free_port()
    timeouts = {"ready_timeout": 15.0, "stop_timeout": 2.0, "drain_timeout": 2.0, "probe_timeout": 0.5,
                "poll_interval": 0.2}
    return build({
        "server": {"state_dir": str(tmp_path / "state"), **(server or {})},
        "comfyui": {**FAST_COMFYUI, "url": f"http://127.0.0.1:{img_port}"},
        "image": {"idle_restore_minutes": 0, **(image or {})},
        "slots": {
            "llm1": {"group": "llm", "backend": "process", "command": fake_llama.command(llm_port),
                     "url": f"http://127.0.0.1:{llm_port}", "ready_path": "/health", "cwd": str(REPO), **timeouts},
            "comfy": {"group": "img", "backend": "process", "cwd": str(REPO), **timeouts,
                      "command": [sys.executable, "-m", "tests.support.comfyui_standin", "--port", str(img_port)]},
        },
    })  # fmt: skip


@pytest.fixture
def bridge_config(tmp_path: Path, standin: ComfyStandIn) -> Callable[..., Config]:
    """``bridge_config(image={...}, server={...})``: a config for the stand-in with fast timeouts."""
    return lambda **sections: make_config(tmp_path, standin.url, **sections)


@pytest.fixture
async def api(aiohttp_client: Any, bridge_config: Callable[..., Config]) -> TestClient:
    """The bridge app (no slots: renders go straight to the stand-in), as an HTTP test client."""
    return await aiohttp_client(create_app(bridge_config()))


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake `systemctl` first on PATH; returns its state directory."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "systemctl").symlink_to(FAKE_SYSTEMCTL)
    state = tmp_path / "systemctl"
    (state / "units").mkdir(parents=True)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SYSTEMCTL_DIR", str(state))
    return state


@pytest.fixture
def containers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Put the fake `podman` and `docker` (tests/support/fake_container.py) first on PATH; returns
    their state directory. Containers still running at the end are killed."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    state = tmp_path / "containers"
    for flavor in ("podman", "docker"):
        fake_container.install(bindir, state, flavor)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    yield state
    fake_container.kill_all(state)
