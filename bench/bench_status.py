"""``GET /api/comfyui/status`` latency and throughput, ComfyUI healthy vs. blackholed.

The bridge runs as its own process; this process is the load generator (C clients, each sending
requests back to back for a fixed count). The claim under test: status is served from memory, so a
blackholed ComfyUI (a socket that accepts and never answers) changes nothing.
Run: ``.venv/bin/python -m bench.bench_status``
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import aiohttp

from bench.common import bridge, standin, summary_ms

REQUESTS_PER_CLIENT = 300


async def load(url: str, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    reachable: set[bool] = set()
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            for _ in range(REQUESTS_PER_CLIENT):
                started = time.perf_counter()
                async with session.get(f"{url}/api/comfyui/status") as resp:
                    body = await resp.json()
                latencies.append(time.perf_counter() - started)
                reachable.add(body["reachable"])

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        **summary_ms(latencies),
        "rps": round(len(latencies) / elapsed),
        "reachable": sorted(reachable),
    }


async def run(concurrency: tuple[int, ...] = (1, 10, 100)) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {}
    async with standin() as comfy_url, bridge(comfy_url) as url:
        await asyncio.sleep(1.0)  # let the first probes land
        results["healthy"] = [await load(url, c) for c in concurrency]
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)
    try:
        async with bridge(f"http://127.0.0.1:{hole.getsockname()[1]}") as url:
            await asyncio.sleep(2.0)  # probes time out; the snapshot says unreachable
            results["blackholed"] = [await load(url, c) for c in concurrency]
    finally:
        hole.close()
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
