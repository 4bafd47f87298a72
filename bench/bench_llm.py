"""The LLM proxy against a direct client to the same llama-server, in one run (issue 12).

The bridge runs as its own process with a real llama-server (the tiny model, ``--alias tiny``) as a
process slot and the ComfyUI stand-in as its img slot; the direct client talks to that same llama-server
on its own port. Every figure is interleaved round by round (direct, bridge, bridge, direct, ...), so
drift in the machine's load hits both sides alike; "paired" figures are medians of per-round
differences.

- added latency per non-streamed request (``max_tokens`` 1): bridge - direct;
- added time to first token of a stream (first chunk carrying content);
- added per-chunk latency: llama-server's chunks carry no send time, so a second LLM slot of the same
  bridge is ``bench/sse_ticker.py``, which stamps each chunk with CLOCK_MONOTONIC; receive time minus
  stamp is each chunk's latency, through the bridge and directly;
- the wait a request sees when it triggers a switch (generation -> inference), from the bridge's
  ``X-Hal0-Wait`` header, split into the slots' share (the switch's phases: ComfyUI's ``/free``,
  llama-server's start and readiness) and the bridge's (the rest). This uses a bridge with only the
  llama-server slot, so the switch waits for nothing else.

``.venv/bin/python -m bench.bench_llm`` prints the results as JSON.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp

from bench.common import ROOT, bridge_process, free_port, percentile, summary_ms
from tests.support.llama_fixtures import find_llama_binary
from tests.support.llama_server import LlamaServer
from tests.support.tiny_gguf import tiny_model_path

NONSTREAM_ROUNDS = 300
TTFT_ROUNDS = 150
CHUNK_STREAMS = 20
CHUNKS_PER_STREAM = 100
CHUNK_INTERVAL_MS = 2.0
SWITCH_ROUNDS = 10
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


def slots_toml(llama: LlamaServer, comfy_port: int, ticker_port: int | None) -> str:
    def argv(items: list[str]) -> str:
        return json.dumps(items)

    toml = (
        "[arbiter]\nmin_mode_seconds = 0\n[image]\nidle_restore_minutes = 0\n"
        f'[slots.chat]\ngroup = "llm"\nbackend = "process"\ncommand = {argv(llama.argv)}\n'
        f'url = "{llama.url}"\nready_path = "/health"\nautostart = true\n'
        f'[slots.comfy]\ngroup = "img"\nbackend = "process"\ncwd = "{ROOT}"\n'
        f"command = {argv([sys.executable, '-m', 'tests.support.comfyui_standin', '--port', str(comfy_port)])}\n"
    )
    if ticker_port is not None:
        toml += (
            f'[slots.ticker]\ngroup = "llm"\nbackend = "process"\ncwd = "{ROOT}"\nautostart = true\n'
            f"command = {argv([sys.executable, '-m', 'bench.sse_ticker', '--port', str(ticker_port)])}\n"
            f'url = "http://127.0.0.1:{ticker_port}"\nready_path = "/health"\nmodels = ["ticker"]\n'
        )
    return toml


async def settled(session: aiohttp.ClientSession, url: str, mode: str, slots: tuple[str, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        async with session.get(url + "/api/comfyui/status") as resp:
            status = await resp.json()
        states = {s["name"]: s["state"] for s in status["slots"]}
        ready = mode != "inference" or all(states.get(s) == "ready" for s in slots)
        if status["mode"] == mode and not status["switchover"]["active"] and ready:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"bridge not settled in {mode}: {status}")
        await asyncio.sleep(0.02)


async def interleaved(rounds: int, direct: Callable[[], Awaitable[float]], bridge: Callable[[], Awaitable[float]]
                      ) -> dict[str, Any]:  # fmt: skip
    """Both measurements per round, order alternating; medians and the median paired difference."""
    d: list[float] = []
    b: list[float] = []
    for i in range(rounds):
        if i % 2:
            b.append(await bridge())
            d.append(await direct())
        else:
            d.append(await direct())
            b.append(await bridge())
    pairs = [y - x for x, y in zip(d, b, strict=True)]
    return {
        "rounds": rounds,
        "direct": summary_ms(d),
        "bridge": summary_ms(b),
        "added_p50_ms": round((percentile(b, 50) - percentile(d, 50)) * 1000, 3),
        "added_paired_p50_ms": round(statistics.median(pairs) * 1000, 3),
        "ratio_p50": round(percentile(b, 50) / percentile(d, 50), 3),
    }


RETRIES = {"count": 0}  # requests sent again because the server had closed the kept-alive connection


async def once_more(attempt: Callable[[], Awaitable[float]]) -> float:
    """What any keep-alive client does: a request on a connection the server just closed is sent again."""
    try:
        return await attempt()
    except aiohttp.ServerDisconnectedError:
        RETRIES["count"] += 1
        return await attempt()


async def nonstream(session: aiohttp.ClientSession, base: str) -> float:
    return await once_more(lambda: _nonstream(session, base))


async def ttft(session: aiohttp.ClientSession, base: str, fresh: bool = False) -> float:
    return await once_more(lambda: _ttft(session, base, fresh))


async def _nonstream(session: aiohttp.ClientSession, base: str) -> float:
    started = time.perf_counter()
    async with session.post(base + "/v1/chat/completions", json={**CHAT, "max_tokens": 1}) as resp:
        await resp.read()
        assert resp.status == 200, resp.status
    return time.perf_counter() - started


async def _ttft(session: aiohttp.ClientSession, base: str, fresh: bool) -> float:
    # llama-server closes a connection after a stream without saying so, so a direct client that wants no
    # failed requests opens a fresh connection per stream, as the bridge does upstream (bridge/llm/proxy.py)
    headers = {"Connection": "close"} if fresh else {}
    started = time.perf_counter()
    first: float | None = None
    body = {**CHAT, "max_tokens": 4, "stream": True}
    async with session.post(base + "/v1/chat/completions", json=body, headers=headers) as resp:
        async for line in resp.content:
            if first is None and line.startswith(b"data: ") and b'"delta":{"content":"' in line:
                first = time.perf_counter()
    assert first is not None
    return first - started


async def chunk_latencies(session: aiohttp.ClientSession, base: str) -> list[float]:
    body = {"model": "ticker", "messages": [], "stream": True, "chunks": CHUNKS_PER_STREAM,
            "interval_ms": CHUNK_INTERVAL_MS}  # fmt: skip
    out: list[float] = []
    async with session.post(base + "/v1/chat/completions", json=body) as resp:
        async for line in resp.content:
            now = time.monotonic_ns()
            if line.startswith(b"data: {"):
                out.append((now - json.loads(line[6:])["t_ns"]) / 1e9)
    assert len(out) == CHUNKS_PER_STREAM, len(out)
    return out


async def per_chunk(session: aiohttp.ClientSession, direct: str, bridge: str) -> dict[str, Any]:
    d: list[float] = []
    b: list[float] = []
    for i in range(CHUNK_STREAMS):
        for base, into in ((direct, d), (bridge, b)) if i % 2 == 0 else ((bridge, b), (direct, d)):
            into.extend(await chunk_latencies(session, base))
    return {
        "streams": CHUNK_STREAMS, "chunks_per_stream": CHUNKS_PER_STREAM, "interval_ms": CHUNK_INTERVAL_MS,
        "direct": summary_ms(d), "bridge": summary_ms(b),
        "added_p50_ms": round((percentile(b, 50) - percentile(d, 50)) * 1000, 3),
        "ratio_p50": round(percentile(b, 50) / percentile(d, 50), 3),
    }  # fmt: skip


async def switch_wait(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    waits: list[float] = []
    slots_share: list[float] = []
    bridge_share: list[float] = []
    totals: list[float] = []
    phases_all: list[dict[str, float]] = []
    for _ in range(SWITCH_ROUNDS):
        async with session.post(url + "/api/comfyui/switchover", json={"mode": "generation"}) as resp:
            assert resp.status == 202, await resp.text()
        await settled(session, url, "generation", ())
        started = time.perf_counter()
        async with session.post(url + "/v1/chat/completions", json={**CHAT, "max_tokens": 1}) as resp:
            await resp.read()
            assert resp.status == 200, resp.status
            wait = float(resp.headers["X-Hal0-Wait"])
        totals.append(time.perf_counter() - started)
        status = await settled(session, url, "inference", ("chat",))
        sw = status["switchover"]
        assert sw["trigger"] == "llm", sw
        share = sum(sw["phases"].values())
        waits.append(wait)
        slots_share.append(share)
        bridge_share.append(wait - share)
        phases_all.append(sw["phases"])
    return {
        "rounds": SWITCH_ROUNDS,
        "wait": summary_ms(waits),
        "slots_share": summary_ms(slots_share),
        "bridge_share": summary_ms(bridge_share),
        "request_total": summary_ms(totals),
        "phases_p50_ms": {k: round(statistics.median(p[k] for p in phases_all) * 1000, 2) for k in phases_all[0]},
    }


async def run() -> dict[str, Any]:
    binary, model = find_llama_binary(), tiny_model_path()
    results: dict[str, Any] = {}
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        llama = LlamaServer(binary, model, free_port(), alias="tiny")
        comfy_port, ticker_port = free_port(), free_port()
        url, _pid = await stack.enter_async_context(
            bridge_process(f"http://127.0.0.1:{comfy_port}", slots_toml(llama, comfy_port, ticker_port))
        )
        await settled(session, url, "inference", ("chat", "ticker"))
        for _ in range(20):  # warm both paths' connection pools and llama-server's prompt cache
            await nonstream(session, llama.url)
            await nonstream(session, url)
        results["nonstream"] = await interleaved(
            NONSTREAM_ROUNDS, lambda: nonstream(session, llama.url), lambda: nonstream(session, url)
        )
        results["ttft"] = await interleaved(TTFT_ROUNDS, lambda: ttft(session, llama.url, True), lambda: ttft(session, url))
        results["per_chunk"] = await per_chunk(session, f"http://127.0.0.1:{ticker_port}", url)
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        llama = LlamaServer(binary, model, free_port(), alias="tiny")
        comfy_port = free_port()
        url, _pid = await stack.enter_async_context(
            bridge_process(f"http://127.0.0.1:{comfy_port}", slots_toml(llama, comfy_port, None))
        )
        await settled(session, url, "inference", ("chat",))
        results["switch_wait"] = await switch_wait(session, url)
    results["client_retries_on_server_disconnect"] = RETRIES["count"]
    return results


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), indent=1))
