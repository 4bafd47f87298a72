"""Run a real llama.cpp ``llama-server`` as a child process for tests (issues 10 and 12).

``LlamaServer`` builds the command line (``command_for(port)``, so a bridge process slot can be
configured to run the very same argv itself), starts the binary, waits for ``GET /health`` to answer
200 (bounded), and stops it the way NOTES-testing.md measured it must be stopped: llama-server's first
SIGTERM ends generation but the process lives until in-flight clients hang up, its second SIGTERM
exits at once (``exit(1)`` in tools/server/server.cpp's signal handler), and SIGKILL is the last word.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

START_TIMEOUT = 30.0  # seconds for /health to answer 200 (measured: < 0.1 s for the tiny model)
STOP_GRACE = 5.0  # seconds after each SIGTERM before the next step
HEALTH_POLL = 0.005  # fast enough to see the short 503 "Loading model" window
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=2.0)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bind port 0, read it back, release it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class HealthSample:
    """One ``GET /health`` poll during start: ``status`` is None while the port refuses connections."""

    at: float  # seconds since the process was spawned
    status: int | None
    body: str


@dataclass(frozen=True, slots=True)
class StopResult:
    returncode: int
    signals: tuple[str, ...]  # what it took, e.g. ("SIGTERM",) or ("SIGTERM", "SIGTERM", "SIGKILL")
    seconds: float


@dataclass
class LlamaServer:
    """One llama-server process on 127.0.0.1:``port``; output goes to ``log_path`` when given."""

    binary: Path
    model: Path
    port: int
    api_key: str | None = None
    slots: bool = True
    embeddings: bool = False
    ctx: int = 512
    parallel: int = 1
    threads: int = 1  # the machine has 2 shared cores; the tiny model needs no more
    alias: str | None = None
    extra_args: tuple[str, ...] = ()
    log_path: Path | None = None
    health_trace: list[HealthSample] = field(default_factory=list, init=False)
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _spawned: float = field(default=0.0, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def command_for(self, port: int) -> list[str]:
        """The argv that serves this configuration on ``port``."""
        argv = [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1", "--port", str(port),
                "-c", str(self.ctx), "--parallel", str(self.parallel), "--threads", str(self.threads)]  # fmt: skip
        argv.append("--slots" if self.slots else "--no-slots")
        if self.api_key is not None:
            argv += ["--api-key", self.api_key]
        if self.embeddings:
            argv += ["--embeddings", "--pooling", "mean"]
        if self.alias is not None:
            argv += ["--alias", self.alias]
        return argv + list(self.extra_args)

    @property
    def argv(self) -> list[str]:
        return self.command_for(self.port)

    def headers(self) -> dict[str, str]:
        """The request headers a client of this server needs (the bearer key, when it has one)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key is not None else {}

    async def start(self, timeout: float = START_TIMEOUT) -> LlamaServer:
        """Spawn the process and wait until ``/health`` answers 200; on failure stop it and raise."""
        if self.running:
            raise RuntimeError("llama-server already running")
        out = await asyncio.to_thread(open, self.log_path, "ab") if self.log_path else None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=out or asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
        finally:
            if out is not None:
                out.close()
        self._spawned = time.monotonic()
        self.health_trace = []
        try:
            await self.wait_healthy(timeout)
        except BaseException:
            await self.stop()
            raise
        return self

    async def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``/health`` (recording each answer in ``health_trace``) until 200 or ``timeout``."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session:
            while True:
                if not self.running:
                    raise RuntimeError(f"llama-server exited ({self.returncode}) before healthy: {self.log_tail()}")
                status: int | None = None
                body = ""
                with contextlib.suppress(aiohttp.ClientConnectionError, TimeoutError):
                    async with session.get(f"{self.url}/health") as resp:
                        status, body = resp.status, await resp.text()
                self.health_trace.append(HealthSample(time.monotonic() - self._spawned, status, body))
                if status == 200:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"llama-server not healthy after {timeout} s: {self.log_tail()}")
                await asyncio.sleep(HEALTH_POLL)

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process (no-op once it has exited)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(sig)

    async def wait(self, timeout: float) -> int | None:
        """The exit code once the process has ended within ``timeout``, else None."""
        if self._proc is None:
            return None
        try:
            return await asyncio.wait_for(self._proc.wait(), timeout)
        except TimeoutError:
            return None

    async def stop(self, grace: float = STOP_GRACE) -> StopResult:
        """SIGTERM; after ``grace`` a second SIGTERM; after another ``grace`` SIGKILL."""
        started = time.monotonic()
        sent: list[str] = []
        if self._proc is None:
            return StopResult(0, (), 0.0)
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
            if self._proc.returncode is not None:
                break
            self.signal(sig)
            sent.append(sig.name)
            if sig != signal.SIGKILL:
                await self.wait(grace)
        code = await self._proc.wait()  # after SIGKILL the kernel reaps it at once
        return StopResult(code, tuple(sent), time.monotonic() - started)

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
