"""Daemon footprint: RSS idle and with 100 SSE clients; CPU while idle (no busy polling).

RSS is ``VmRSS`` from ``/proc/<pid>/status``; CPU is ``utime + stime`` from ``/proc/<pid>/stat`` over
an idle window. The baseline, measured in the same run, is a bare interpreter that imported aiohttp
and sleeps (what any aiohttp daemon costs before doing anything). The bridge is idle with ComfyUI
healthy (its probe loop and websocket running), with 100 SSE subscribers connected, and with ComfyUI
gone (reconnect back-off running).
Run: ``.venv/bin/python -m bench.bench_footprint``
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import bridge_process, free_port, process, standin

SSE_CLIENTS = 100
IDLE_WINDOW_S = 5.0  # CPU is sampled over this long
SETTLE_S = 2.0  # after start-up or a change, before sampling (the first probes, connections settle)
WAIT_S = 10.0  # bound on SSE clients getting their first snapshot
CLK_TCK = os.sysconf("SC_CLK_TCK")
BARE = "import asyncio, aiohttp, time; time.sleep(3600)"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime; fields 14 and 15 of /proc/<pid>/stat, counted after the ``(comm)`` field."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def idle_cpu(pids: dict[str, int], window: float = IDLE_WINDOW_S) -> dict[str, float]:
    """Percent of one core each process used over the same window."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = asyncio.get_running_loop().time()
    await asyncio.sleep(window)
    elapsed = asyncio.get_running_loop().time() - started
    return {name: round((cpu_seconds(pid) - before[name]) / elapsed * 100, 3) for name, pid in pids.items()}


async def sse_clients(session: aiohttp.ClientSession, url: str, count: int) -> list[aiohttp.ClientResponse]:
    """Open ``count`` event streams and read each one's first snapshot, so all are really subscribed."""

    async def one() -> aiohttp.ClientResponse:
        resp = await session.get(f"{url}/api/events", timeout=aiohttp.ClientTimeout(total=None))
        while not (await resp.content.readline()).startswith(b"data: "):
            pass
        return resp

    async with asyncio.timeout(WAIT_S):
        return list(await asyncio.gather(*(one() for _ in range(count))))


async def run() -> dict[str, Any]:
    async with process(sys.executable, "-c", BARE) as bare, standin() as comfy:
        async with bridge_process(comfy) as (url, pid):
            await asyncio.sleep(SETTLE_S)
            rss_idle, rss_bare = rss_kib(pid), rss_kib(bare.pid)
            cpu_idle = await idle_cpu({"bridge": pid, "bare": bare.pid})
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=connector) as session:
                streams = await sse_clients(session, url, SSE_CLIENTS)
                await asyncio.sleep(SETTLE_S)
                rss_sse = rss_kib(pid)
                cpu_sse = await idle_cpu({"bridge": pid})
                for resp in streams:
                    resp.close()
            await asyncio.sleep(SETTLE_S)
            rss_after = rss_kib(pid)
    # ComfyUI gone: the probe loop keeps failing and the websocket keeps retrying, at their intervals
    async with bridge_process(f"http://127.0.0.1:{free_port()}") as (url, pid):
        await asyncio.sleep(SETTLE_S)
        cpu_down = await idle_cpu({"bridge": pid})
    return {
        "rss_bare_mib": round(rss_bare / 1024, 1),
        "rss_idle_mib": round(rss_idle / 1024, 1),
        "rss_idle_over_bare": round(rss_idle / rss_bare, 2),
        f"rss_{SSE_CLIENTS}_sse_mib": round(rss_sse / 1024, 1),
        "rss_per_sse_client_kib": round((rss_sse - rss_idle) / SSE_CLIENTS, 1),
        "rss_after_sse_closed_mib": round(rss_after / 1024, 1),
        "cpu_window_s": IDLE_WINDOW_S,
        "cpu_idle_pct": cpu_idle["bridge"],
        "cpu_bare_pct": cpu_idle["bare"],
        f"cpu_idle_{SSE_CLIENTS}_sse_pct": cpu_sse["bridge"],
        "cpu_idle_comfyui_down_pct": cpu_down["bridge"],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=2))
