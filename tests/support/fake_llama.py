"""A llama.cpp-server stand-in for LLM slot tests: a real HTTP process, nothing else.

It answers what the bridge reads from a llama.cpp server (``GET /health``, ``GET /slots`` with
``is_processing``) and takes orders over HTTP so a test can make it busy or idle while the bridge
drains it. Command-line switches inject the faults the arbiter must survive:

    python -m tests.support.fake_llama --port N [--load-seconds S | --never-healthy]
           [--ignore-sigterm] [--exit-at-once CODE] [--busy] [--startup-delay S] [--log FILE]

Control routes: ``POST /_fake/busy`` ``{"busy": true|false}``; ``GET /_fake/state``.
It prints ``READY <url>`` once listening; ``--log`` appends one line per lifecycle event (``start``,
``sigterm busy=<0|1>``, ``exit``) so tests can see what happened after the process is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class FakeState:
    load_seconds: float = 0.0
    never_healthy: bool = False
    busy: bool = False
    n_slots: int = 1
    started: float = field(default_factory=time.monotonic)
    sigterms: int = 0
    slots_requests: int = 0
    log_path: str | None = None

    def log(self, line: str) -> None:
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(f"{os.getpid()} {line}\n")

    @property
    def healthy(self) -> bool:
        return not self.never_healthy and time.monotonic() - self.started >= self.load_seconds


STATE = web.AppKey("state", FakeState)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind port 0, read it back, release it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(port: int, *flags: str) -> list[str]:
    """The argv that runs this fake as a slot ``command`` (same interpreter as the tests)."""
    return [sys.executable, "-m", "tests.support.fake_llama", "--port", str(port), *flags]


async def health(request: web.Request) -> web.Response:
    """llama.cpp answers 503 ``Loading model`` until the model is in memory, then ``{"status": "ok"}``."""
    state = request.app[STATE]
    if not state.healthy:
        return web.json_response(
            {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, status=503
        )
    return web.json_response({"status": "ok"})


async def slots(request: web.Request) -> web.Response:
    """One entry per slot, as llama.cpp's ``GET /slots``; slot 0 carries the busy flag."""
    state = request.app[STATE]
    state.slots_requests += 1
    body = [
        {"id": i, "id_task": -1, "n_ctx": 4096, "speculative": False, "is_processing": state.busy and i == 0}
        for i in range(state.n_slots)
    ]
    return web.json_response(body)


async def set_busy(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await request.json()
    state.busy = bool(data.get("busy"))
    return web.json_response({"busy": state.busy})


async def get_state(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(
        {
            "pid": os.getpid(),
            "busy": state.busy,
            "healthy": state.healthy,
            "sigterms": state.sigterms,
            "slots_requests": state.slots_requests,
        }
    )


def build_app(state: FakeState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/health", health)
    app.router.add_get("/slots", slots)
    app.router.add_post("/_fake/busy", set_busy)
    app.router.add_get("/_fake/state", get_state)
    return app


async def serve(args: argparse.Namespace) -> None:
    state = FakeState(
        load_seconds=args.load_seconds,
        never_healthy=args.never_healthy,
        busy=args.busy,
        n_slots=args.n_slots,
        log_path=args.log,
    )
    state.log("start")
    if args.startup_delay:
        await asyncio.sleep(args.startup_delay)
    runner = web.AppRunner(build_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    print(f"READY http://{args.host}:{args.port}", flush=True)
    state.started = time.monotonic()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        state.sigterms += 1
        state.log(f"sigterm busy={int(state.busy)}")
        if not args.ignore_sigterm:
            stop.set()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    await runner.cleanup()
    state.log("exit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--load-seconds", type=float, default=0.0, help="/health answers 503 this long")
    parser.add_argument("--never-healthy", action="store_true", help="/health never answers 200")
    parser.add_argument("--ignore-sigterm", action="store_true", help="only SIGKILL ends it")
    parser.add_argument("--exit-at-once", type=int, default=None, metavar="CODE", help="exit at start")
    parser.add_argument("--busy", action="store_true", help="start with slot 0 processing")
    parser.add_argument("--n-slots", type=int, default=1)
    parser.add_argument("--startup-delay", type=float, default=0.0, help="sleep before listening")
    parser.add_argument("--log", default=None, help="append lifecycle events to this file")
    args = parser.parse_args(argv)
    if args.exit_at_once is not None:
        FakeState(log_path=args.log).log(f"exit-at-once {args.exit_at_once}")
        return args.exit_at_once
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
