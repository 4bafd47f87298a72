"""Helpers shared by the benchmarks: free ports, child processes that announce readiness, statistics."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


async def submit_and_fetch(
    session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, comfy: str, body: dict[str, Any]
) -> None:
    """The least a direct ComfyUI client does for a render: POST /prompt, follow it on its websocket
    to ``executing {node: null}``, then GET /view of every image its ``executed`` messages named."""
    async with session.post(f"{comfy}/prompt", json=body) as resp:
        prompt_id = (await resp.json())["prompt_id"]
    images: list[dict[str, Any]] = []
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        data = json.loads(msg.data)
        payload = data.get("data", {})
        if payload.get("prompt_id") != prompt_id:
            continue
        if data["type"] == "executed":
            images += payload["output"].get("images", [])
        if data["type"] == "executing" and payload.get("node") is None:
            break
    for ref in images:
        async with session.get(f"{comfy}/view", params=ref) as resp:
            await resp.read()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 3),
        "p99_ms": round(percentile(values, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(values) * 1000, 3),
    }


@asynccontextmanager
async def process(*argv: str, env: dict[str, str] | None = None) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


async def wait_http(url: str, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s")
            await asyncio.sleep(0.05)


@asynccontextmanager
async def standin(step_seconds: float = 0.0) -> AsyncIterator[str]:
    port = free_port()
    async with process(sys.executable, "-m", "tests.support.comfyui_standin", "--port", str(port),
                       "--step-seconds", str(step_seconds)):
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/system_stats")
        yield url


@asynccontextmanager
async def bridge_process(comfy_url: str, extra_toml: str = "") -> AsyncIterator[tuple[str, int]]:
    """The daemon as its own process: yields its URL and pid (for /proc readings)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hal0-bench-") as tmp:
        cfg = Path(tmp) / "bridge.toml"
        cfg.write_text(
            f'[server]\nport = {port}\nstate_dir = "{tmp}"\n'
            f'[comfyui]\nurl = "{comfy_url}"\n{extra_toml}'
        )
        argv = (sys.executable, "-m", "hal0_bridge", "--config", str(cfg), "--log-level", "WARNING")
        async with process(*argv) as proc:
            url = f"http://127.0.0.1:{port}"
            await wait_http(f"{url}/api/info")
            yield url, proc.pid


@asynccontextmanager
async def bridge(comfy_url: str, extra_toml: str = "") -> AsyncIterator[str]:
    async with bridge_process(comfy_url, extra_toml) as (url, _pid):
        yield url
