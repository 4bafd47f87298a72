"""``GET /api/comfyui/status`` latency and throughput, ComfyUI healthy vs. blackholed.

The bridge runs as its own process. The load generator is ``wrk`` (C, one thread) when installed,
else this process (aiohttp client); each uses C closed-loop clients that send back to back. The
claim under test: status is served from memory, so a blackholed ComfyUI (a socket that accepts and
never answers) changes nothing.

Baseline in the same run: a bare aiohttp server (no middlewares, no state) answering the same path
with a body of the same size, under the same load generator. With closed-loop clients the latency at
C clients is about C / throughput (Little's law), so the baseline shows the floor that aiohttp on this
machine sets before the bridge does anything. An open-loop run (100 clients polling 10 times a second
each, from this process) measures latency at a realistic load rather than at saturation. Every figure
is the median of ``RUNS`` runs.
Run: ``.venv/bin/python -m bench.bench_status``
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from bench.common import bridge, free_port, process, standin, summary_ms, wait_http

RUNS = 3
WRK_SECONDS = 1  # per run and concurrency (thousands of requests)
REQUESTS_PER_CLIENT = 200  # aiohttp fallback: requests per client per run
PROBE_SETTLE_S = 1.0  # healthy: let the first probes land
BLACKHOLE_SETTLE_S = 2.0  # blackholed: probes time out and the snapshot says unreachable
WRK = shutil.which("wrk")
PATH = "/api/comfyui/status"
OPEN_CLIENTS = 100  # open loop: this many clients ...
OPEN_RATE = 10.0  # ... each polling this often per second (100 dashboards), for ...
OPEN_SECONDS = 2.0  # ... this long per run

BARE_SERVER = """
import sys
from aiohttp import web
body = b"x" * int(sys.argv[2])
async def status(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/api/comfyui/status", status)
app.router.add_get("/api/info", status)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * _UNITS[unit]


async def load_wrk(url: str, clients: int) -> dict[str, float]:
    """One wrk run: p50/p99 from its latency distribution (HdrHistogram), requests/s, errors."""
    proc = await asyncio.create_subprocess_exec(
        WRK, "-t1", f"-c{clients}", f"-d{WRK_SECONDS}s", "--latency", f"{url}{PATH}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {
        "p50_ms": round(_seconds(pct["50"]) * 1000, 3),
        "p99_ms": round(_seconds(pct["99"]) * 1000, 3),
        "rps": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))),  # type: ignore[union-attr]
        "errors": errors,
    }


async def load_aiohttp(url: str, clients: int) -> dict[str, float]:
    """One run with this process as the load generator (sharing the machine's cores with the bridge)."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            for _ in range(REQUESTS_PER_CLIENT):
                started = time.perf_counter()
                async with session.get(f"{url}{PATH}") as resp:
                    await resp.read()
                    errors += resp.status != 200
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    s = summary_ms(latencies)
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "rps": round(len(latencies) / elapsed), "errors": errors}


async def load_open(url: str, clients: int = OPEN_CLIENTS, rate: float = OPEN_RATE) -> dict[str, float]:
    """Open loop: each client sends on a fixed schedule whether or not the last answer was quick.

    Latency counts from the scheduled send time, so a stall delays every request behind it and
    shows up (no coordinated omission). This is the load a house full of dashboards makes, unlike
    the closed loop, which measures saturation.
    """
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(phase: float) -> None:
            nonlocal errors
            start = loop.time() + phase
            for k in range(int(OPEN_SECONDS * rate)):
                due = start + k / rate
                await asyncio.sleep(max(0.0, due - loop.time()))
                async with session.get(f"{url}{PATH}") as resp:
                    await resp.read()
                    errors += resp.status != 200
                latencies.append(loop.time() - due)

        await asyncio.gather(*(client(i / clients / rate) for i in range(clients)))
    s = summary_ms(latencies)
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "rps": round(clients * rate), "errors": errors}


async def load_open_median(url: str, runs: int = RUNS) -> dict[str, Any]:
    rows = [await load_open(url) for _ in range(runs)]
    return {
        "clients": OPEN_CLIENTS,
        "rate_per_client": OPEN_RATE,
        **{k: round(statistics.median(r[k] for r in rows), 3) for k in ("p50_ms", "p99_ms", "rps")},
        "errors": sum(r["errors"] for r in rows),
    }


async def load(url: str, clients: int, runs: int = RUNS) -> dict[str, Any]:
    """Median over ``runs`` runs of each figure."""
    one = load_wrk if WRK else load_aiohttp
    rows = [await one(url, clients) for _ in range(runs)]
    return {
        "clients": clients,
        **{k: round(statistics.median(r[k] for r in rows), 3) for k in ("p50_ms", "p99_ms", "rps")},
        "errors": sum(r["errors"] for r in rows),
    }


async def snapshot(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}{PATH}") as resp:
        return {"bytes": len(await resp.read()), **(await resp.json())}


@asynccontextmanager
async def bare_server(body_bytes: int) -> AsyncIterator[str]:
    port = free_port()
    async with process(sys.executable, "-c", BARE_SERVER, str(port), str(body_bytes)):
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/api/info")
        yield url


async def run(concurrency: tuple[int, ...] = (1, 10, 100), runs: int = RUNS) -> dict[str, Any]:
    results: dict[str, Any] = {"load_generator": "wrk -t1" if WRK else "aiohttp (in the bench process)", "runs": runs}
    async with standin() as comfy_url, bridge(comfy_url) as url:
        await asyncio.sleep(PROBE_SETTLE_S)
        snap = await snapshot(url)
        results["body_bytes"] = snap["bytes"]
        results["healthy_reachable"] = snap["reachable"]
        results["healthy"] = [await load(url, c, runs) for c in concurrency]
        results["healthy_open_loop"] = await load_open_median(url, runs)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)
    try:
        async with bridge(f"http://127.0.0.1:{hole.getsockname()[1]}") as url:
            await asyncio.sleep(BLACKHOLE_SETTLE_S)
            results["blackholed_reachable"] = (await snapshot(url))["reachable"]
            results["blackholed"] = [await load(url, c, runs) for c in concurrency]
            results["blackholed_open_loop"] = await load_open_median(url, runs)
    finally:
        hole.close()
    async with bare_server(results["body_bytes"]) as url:
        results["bare_aiohttp"] = [await load(url, c, runs) for c in concurrency]
        results["bare_aiohttp_open_loop"] = await load_open_median(url, runs)
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
