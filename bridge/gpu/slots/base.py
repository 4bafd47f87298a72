"""What every slot backend shares: its state reading, its one error type, and bounded polling.

Every wait on a slot (readiness, drain, stop) is bounded by the slot's configured timeouts; polling
starts fast and backs off a little, so it adds well under 100 ms to any wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ...status import Container

# Poll cadence for readiness, drain and stop waits: first look soon, then at most every POLL_MAX.
POLL_FIRST = 0.01
POLL_MAX = 0.05
POLL_FACTOR = 1.5

Phase = Literal["running", "starting", "stopping", "stopped", "failed"]


class SlotError(Exception):
    """A slot did not do what was asked in time (will not start, stop or get ready)."""


@dataclass(frozen=True, slots=True)
class CliResult:
    rc: int
    out: str
    err: str

    def message(self) -> str:
        return self.err or self.out.strip() or f"exit {self.rc}"


async def run_cli(argv: Sequence[str], timeout: float, *, shown: int | None = None) -> CliResult:
    """Run a management CLI (``systemctl``, ``podman``, ``docker``) without stdin, bounded by ``timeout``:
    one that cannot start or does not return is a :class:`SlotError` (a hung one is killed first).
    ``shown``: how many words of ``argv`` the timeout message names (default: all)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise SlotError(f"cannot run {argv[0]}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise SlotError(f"{' '.join(argv[:shown])} did not return within {timeout:g}s") from None
    return CliResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace").strip())


@dataclass(frozen=True, slots=True)
class BackendState:
    """What the backend itself says: process alive / unit state; ``detail`` explains failures.

    ``container`` is the container's own state when the backend can see a container (backend
    ``container``, or a systemd unit with ``container_name``); None derives it from the phase.
    """

    phase: Phase
    detail: str = ""
    ever_ran: bool = True
    container: Container | None = None

    @property
    def container_view(self) -> Container:
        """Status ``container``: the one mapping from a backend reading to running/exited/absent."""
        if self.container is not None:
            return self.container
        if self.phase in ("running", "starting", "stopping"):
            return "running"
        return "exited" if self.ever_ran else "absent"


def _backoff() -> Iterator[float]:
    """Poll delays: fast first, then capped at POLL_MAX."""
    delay = POLL_FIRST
    while True:
        yield delay
        delay = min(delay * POLL_FACTOR, POLL_MAX)


async def poll_until(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Await ``check()`` until it returns true or ``timeout`` passes; True when it succeeded."""
    deadline = time.monotonic() + timeout
    for delay in _backoff():
        if await check():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(delay, left))
    raise AssertionError("unreachable")


class SlotBackend(Protocol):
    async def start(self) -> None: ...
    async def stop(self, timeout: float) -> None: ...
    async def state(self) -> BackendState: ...
    async def close(self) -> None: ...
