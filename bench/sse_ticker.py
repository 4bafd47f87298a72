"""A timestamping SSE upstream for the per-chunk latency benchmark: ``python -m bench.sse_ticker --port N``.

``POST /v1/chat/completions`` with ``{"chunks": K, "interval_ms": I}`` streams K OpenAI-style chunks
I ms apart, each carrying ``t_ns``: ``time.monotonic_ns()`` just before the chunk is written. Linux's
CLOCK_MONOTONIC is one clock for every process on the machine, so a client on the same host subtracts
``t_ns`` from its own receive time and gets that chunk's latency exactly — through the bridge and
directly. llama-server's chunks carry no send time, which is why this stand-in exists; the other LLM
figures use the real llama-server. ``GET /health`` and ``GET /v1/models`` make it a valid LLM slot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    chunks, interval = int(body.get("chunks", 50)), float(body.get("interval_ms", 2.0)) / 1000
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    for i in range(chunks):
        event = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "x"}}],
                 "i": i, "t_ns": time.monotonic_ns()}  # fmt: skip
        await resp.write(b"data: " + json.dumps(event).encode() + b"\n\n")
        await asyncio.sleep(interval)
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "ticker", "object": "model", "owned_by": "bench"}]})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
