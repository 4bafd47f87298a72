"""pytest fixtures for a real llama-server: the binary, the tiny model, and servers that stop themselves.

Import the fixtures into a conftest (``from tests.support.llama_fixtures import ...``). The binary comes
from ``HAL0_LLAMA_SERVER`` (scripts/test exports it, empty when its build failed) or else from scripts/ensure-llama-server.sh, which
builds it once into a cache. When it cannot be had, tests that need it skip with the reason on a
developer's machine, but fail under CI (``CI`` set): there a missing binary is a broken install step,
not a reason to pass quietly.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.llama_server import LlamaServer, free_port
from tests.support.tiny_gguf import tiny_model_path

ENSURE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-llama-server.sh"
ENSURE_TIMEOUT = 1800.0  # seconds; a build from scratch takes about 6 minutes on 2 cores


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"real llama-server required under CI: {reason}", pytrace=False)
    pytest.skip(f"no real llama-server: {reason}")


def find_llama_binary() -> Path:
    """The binary from ``HAL0_LLAMA_SERVER`` when it runs, else whatever the ensure script prints."""
    given = os.environ.get("HAL0_LLAMA_SERVER")
    if given == "":
        raise RuntimeError("scripts/test could not build it (HAL0_LLAMA_SERVER is empty; see its output)")
    if given:
        path = Path(given)
        ok = path.is_file() and subprocess.run([path, "--version"], check=False, capture_output=True, timeout=30).returncode == 0
        if not ok:
            raise RuntimeError(f"HAL0_LLAMA_SERVER={given} does not run")
        return path
    done = subprocess.run([ENSURE_SCRIPT], check=False, capture_output=True, text=True, timeout=ENSURE_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(f"{ENSURE_SCRIPT.name} failed: {done.stderr.strip()[-2000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def llama_binary() -> Path:
    try:
        return find_llama_binary()
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        _unavailable(str(exc))
        raise  # unreachable: skip/fail raise


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    return tiny_model_path()


StartLlama = Callable[..., Awaitable[LlamaServer]]


@pytest.fixture
async def start_llama(llama_binary: Path, tiny_model: Path, tmp_path: Path) -> AsyncIterator[StartLlama]:
    """``await start_llama(api_key=..., ctx=..., ...)``: a healthy server on a free port, stopped after."""
    servers: list[LlamaServer] = []

    async def start(**options: Any) -> LlamaServer:
        n = len(servers)
        server = LlamaServer(llama_binary, tiny_model, free_port(), log_path=tmp_path / f"llama-{n}.log", **options)
        servers.append(server)
        return await server.start()

    try:
        yield start
    finally:
        await asyncio.gather(*(s.stop() for s in servers if s.running))
