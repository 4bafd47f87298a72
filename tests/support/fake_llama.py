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
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# stdlib only: the fake starts in a fraction of the time an aiohttp app needs, and tests start many.


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


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind port 0, read it back, release it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command(port: int, *flags: str) -> list[str]:
    """The argv that runs this fake as a slot ``command`` (same interpreter as the tests)."""
    return [sys.executable, "-m", "tests.support.fake_llama", "--port", str(port), *flags]


class Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/health":
            # llama.cpp answers 503 "Loading model" until the model is in memory
            if not state.healthy:
                self._json({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}, 503)
            else:
                self._json({"status": "ok"})
        elif self.path == "/slots":
            # one entry per slot, as llama.cpp's GET /slots; slot 0 carries the busy flag
            state.slots_requests += 1
            self._json([
                {"id": i, "id_task": -1, "n_ctx": 4096, "speculative": False, "is_processing": state.busy and i == 0}
                for i in range(state.n_slots)
            ])  # fmt: skip
        elif self.path == "/_fake/state":
            self._json({"pid": os.getpid(), "busy": state.busy, "healthy": state.healthy,
                        "sigterms": state.sigterms, "slots_requests": state.slots_requests})  # fmt: skip
        else:
            self._json({"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}, 404)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/_fake/busy":
            self.server.state.busy = bool(body.get("busy"))
            self._json({"busy": self.server.state.busy})
        else:
            self._json({"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}, 404)


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: FakeState) -> None:
        self.state = state
        super().__init__(address, Handler)


def serve(args: argparse.Namespace) -> None:
    state = FakeState(
        load_seconds=args.load_seconds,
        never_healthy=args.never_healthy,
        busy=args.busy,
        n_slots=args.n_slots,
        log_path=args.log,
    )
    state.log("start")
    if args.startup_delay:
        time.sleep(args.startup_delay)
    server = FakeServer((args.host, args.port), state)
    state.started = time.monotonic()

    def on_sigterm(signum: int, frame: Any) -> None:
        state.sigterms += 1
        state.log(f"sigterm busy={int(state.busy)}")
        if not args.ignore_sigterm:
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"READY http://{args.host}:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.05)
    server.server_close()
    state.log("exit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
    serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
