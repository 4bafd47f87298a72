"""Slots: the GPU consumers the arbiter starts and stops (LLM servers and the ComfyUI img slot).

A :class:`Slot` is one configured consumer: a *backend* that runs it (a systemd unit via
``systemctl``, or a child process the bridge owns) plus the HTTP view of it (readiness, and for
llama.cpp slots the in-flight work from ``GET /slots``). :class:`SlotManager` holds all slots, polls
their state into the status hub (``slots`` and the img slot's ``container``) and gives the arbiter
the few verbs it needs. Every wait is bounded by the slot's configured timeouts; polling starts fast
and backs off a little, so it adds well under 100 ms to any wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import aiohttp

from ...config import Config, SlotConfig
from ...status import Container, SlotStateName, SlotStatus, StatusHub

_LOG = logging.getLogger(__name__)

# Poll cadence for readiness, drain and stop waits: first look soon, then at most every POLL_MAX.
POLL_FIRST = 0.01
POLL_MAX = 0.05
POLL_FACTOR = 1.5

COMFY_READY_PATH = "/system_stats"

Phase = Literal["running", "starting", "stopping", "stopped", "failed"]


class SlotError(Exception):
    """A slot did not do what was asked in time (will not start, stop or get ready)."""


@dataclass(frozen=True, slots=True)
class BackendState:
    """What the backend itself says: process alive / unit state; ``detail`` explains failures."""

    phase: Phase
    detail: str = ""
    ever_ran: bool = True


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


# --------------------------------------------------------------------------------------- systemd


_SYSTEMD_PHASES: dict[str, Phase] = {
    "active": "running",
    "reloading": "running",
    "activating": "starting",
    "deactivating": "stopping",
    "inactive": "stopped",
    "failed": "failed",
}


class SystemdBackend:
    """``systemctl [--user] start|stop UNIT``; state from ``show -p ActiveState -p SubState``."""

    def __init__(self, cfg: SlotConfig) -> None:
        self.unit = cfg.unit
        self._prefix = ["--user"] if cfg.systemd_user else []
        self._cfg = cfg

    async def _systemctl(self, *args: str, timeout: float) -> tuple[int, str, str]:
        argv = ["systemctl", *self._prefix, *args]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
            )
        except OSError as err:
            raise SlotError(f"cannot run systemctl: {err}") from err
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SlotError(f"{' '.join(argv)} did not return within {timeout:g}s") from None
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace").strip()

    async def start(self) -> None:
        rc, _, err = await self._systemctl("start", self.unit, timeout=self._cfg.ready_timeout)
        if rc != 0:
            raise SlotError(f"systemctl start {self.unit} failed: {err or f'exit {rc}'}")

    async def stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        rc, _, err = await self._systemctl("stop", self.unit, timeout=timeout)
        if rc != 0:
            raise SlotError(f"systemctl stop {self.unit} failed: {err or f'exit {rc}'}")

        async def stopped() -> bool:
            return (await self.state()).phase in ("stopped", "failed")

        if not await poll_until(stopped, max(0.0, deadline - time.monotonic())):
            raise SlotError(f"{self.unit} did not stop within {timeout:g}s")

    async def state(self) -> BackendState:
        try:
            rc, out, err = await self._systemctl(
                "show", "-p", "ActiveState", "-p", "SubState", self.unit, timeout=self._cfg.probe_timeout
            )
        except SlotError as e:
            return BackendState("failed", str(e))
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        active, sub = props.get("ActiveState", ""), props.get("SubState", "")
        if rc != 0 or active not in _SYSTEMD_PHASES:
            return BackendState("failed", f"systemctl show {self.unit}: {err or active or f'exit {rc}'}")
        return BackendState(_SYSTEMD_PHASES[active], f"{active}/{sub}")

    async def close(self) -> None:
        """Units outlive the bridge: nothing to do."""


# --------------------------------------------------------------------------------------- process


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0") if raw else []


class ProcessBackend:
    """The bridge runs ``command`` itself, in its own session (process group).

    Stop is SIGTERM to the group, then SIGKILL after ``stop_timeout``. A pid file under the state
    directory lets a restarted bridge (even after SIGKILL) adopt a child that is still running instead
    of starting a second copy on the same port. Output goes to ``<state_dir>/slots/<name>.log``.
    """

    def __init__(self, cfg: SlotConfig, run_dir: Path) -> None:
        self._cfg = cfg
        self._pidfile = run_dir / f"{cfg.name}.pid"
        self._logfile = run_dir / f"{cfg.name}.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._waiter: asyncio.Task[int] | None = None
        self._adopted: int | None = None
        self._stopping = False
        self._ever_ran = False
        self.last_exit: int | None = None
        self.on_exit: Callable[[], None] | None = None

    @property
    def pid(self) -> int | None:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc.pid
        return self._adopted

    def _alive(self) -> bool:
        if self._proc is not None:
            return self._proc.returncode is None
        if self._adopted is not None:
            if _pid_alive(self._adopted):
                return True
            self._adopted = None
            self._forget_pidfile()
        return False

    async def adopt(self) -> bool:
        """Take over a child left running by a previous bridge (pid file + matching command line)."""
        try:
            data = json.loads(await asyncio.to_thread(self._pidfile.read_text))
            pid, argv = int(data["pid"]), list(data["argv"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        cmd = await asyncio.to_thread(_cmdline, pid)
        if _pid_alive(pid) and (cmd is None or cmd == argv) and argv == list(self._cfg.command):
            self._adopted = pid
            self._ever_ran = True
            _LOG.info("slot %s: adopted running process %d", self._cfg.name, pid)
            return True
        self._forget_pidfile()
        return False

    async def start(self) -> None:
        if self._alive():
            return
        self._stopping = False
        self.last_exit = None
        argv = list(self._cfg.command)
        await asyncio.to_thread(self._pidfile.parent.mkdir, parents=True, exist_ok=True)
        log = await asyncio.to_thread(open, self._logfile, "ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, **self._cfg.env},
                cwd=self._cfg.cwd or None,
                start_new_session=True,
            )
        except OSError as err:
            raise SlotError(f"cannot run {argv[0]}: {err}") from err
        finally:
            log.close()
        self._ever_ran = True
        await asyncio.to_thread(self._pidfile.write_text, json.dumps({"pid": self._proc.pid, "argv": argv}))
        self._waiter = asyncio.create_task(self._watch(self._proc), name=f"slot-{self._cfg.name}-wait")

    async def _watch(self, proc: asyncio.subprocess.Process) -> int:
        code = await proc.wait()
        self.last_exit = code
        if not self._stopping:
            _LOG.warning("slot %s: process %d exited with code %d", self._cfg.name, proc.pid, code)
        self._forget_pidfile()
        if self.on_exit is not None:
            self.on_exit()
        return code

    def _forget_pidfile(self) -> None:
        with contextlib.suppress(OSError):
            self._pidfile.unlink()

    def _signal(self, sig: int) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    async def _wait_exit(self, timeout: float) -> bool:
        if self._proc is not None and self._waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._waiter), timeout)
            except TimeoutError:
                return False
            return True

        async def gone() -> bool:
            return not self._alive()

        return await poll_until(gone, timeout)

    async def stop(self, timeout: float) -> None:
        if not self._alive():
            return
        self._stopping = True
        self._signal(signal.SIGTERM)
        if await self._wait_exit(timeout):
            return
        _LOG.warning("slot %s: no exit %gs after SIGTERM, sending SIGKILL", self._cfg.name, timeout)
        self._signal(signal.SIGKILL)
        if not await self._wait_exit(timeout):
            raise SlotError(f"slot {self._cfg.name} (pid {self.pid}) survived SIGKILL")

    async def state(self) -> BackendState:
        if self._alive():
            return BackendState("stopping" if self._stopping else "running")
        # the child's returncode is known before the watcher task has run
        code = self._proc.returncode if self._proc is not None else self.last_exit
        if code not in (None, 0) and not self._stopping:
            return BackendState("failed", f"exited with code {code}", self._ever_ran)
        return BackendState("stopped", "", self._ever_ran)

    async def close(self) -> None:
        """The bridge owns its children: they end with it."""
        await self.stop(self._cfg.stop_timeout)


# ------------------------------------------------------------------------------------------ slot


class Slot:
    """One GPU consumer: backend + readiness + in-flight view, and the state shown in status."""

    def __init__(
        self,
        cfg: SlotConfig,
        backend: SystemdBackend | ProcessBackend,
        session: aiohttp.ClientSession,
        *,
        url: str,
        ready_path: str,
    ) -> None:
        self.cfg = cfg
        self.backend = backend
        self._session = session
        self.url = url
        self.ready_path = ready_path
        self._op: Literal["starting", "stopping"] | None = None
        self._epoch = 0  # bumped by every start/stop step, so overlapping polls know they are stale
        self._error: str | None = None
        self._state: SlotStateName = "offline"
        self._container: Container = "absent"
        self.on_change: Callable[[], None] = lambda: None
        if isinstance(backend, ProcessBackend):
            backend.on_exit = self._on_exit

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def group(self) -> Literal["llm", "img"]:
        return "img" if self.cfg.group == "img" else "llm"

    @property
    def state(self) -> SlotStateName:
        return self._op or self._state

    @property
    def container(self) -> Container:
        return self._container

    @property
    def error(self) -> str | None:
        return self._error

    def _on_exit(self) -> None:
        asyncio.get_running_loop().create_task(self.refresh())

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.cfg.probe_timeout)

    async def probe_ready(self) -> bool:
        """HTTP readiness: 200 on url+ready_path; ComfyUI's /system_stats must carry python_version."""
        if not self.url or not self.ready_path:
            return True
        try:
            async with self._session.get(self.url + self.ready_path, timeout=self._timeout()) as resp:
                if resp.status != 200:
                    return False
                if self.ready_path.rstrip("/").endswith("system_stats"):
                    data = await resp.json(content_type=None)
                    return bool(data["system"]["python_version"])
                return True
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError):
            return False

    async def in_flight(self) -> int | None:
        """llama.cpp ``GET /slots``: how many slots are processing; None when it cannot be seen."""
        if self.group != "llm" or self.cfg.inflight != "slots" or not self.url:
            return None
        try:
            async with self._session.get(self.url + "/slots", timeout=self._timeout()) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        if not isinstance(data, list):
            return None
        return sum(1 for s in data if isinstance(s, dict) and s.get("is_processing"))

    async def is_running(self) -> bool:
        return (await self.backend.state()).phase in ("running", "starting")

    async def refresh(self) -> SlotStateName:
        """Re-read backend state (and readiness) into :attr:`state`; notifies on change.

        A start or stop in progress owns the state: a poll that began before (or overlaps) one is
        discarded, so a stale reading can never overwrite what the operation established.
        """
        epoch = self._epoch
        if self._op is not None:
            return self.state
        bs = await self.backend.state()
        ready = bs.phase == "running" and await self.probe_ready()
        if self._op is not None or epoch != self._epoch:
            return self.state
        before = (self.state, self._container)
        if bs.phase in ("running", "starting", "stopping"):
            self._container = "running"
        else:
            self._container = "exited" if bs.ever_ran else "absent"
        if bs.phase == "running":
            if ready:
                self._state, self._error = "ready", None
            else:
                self._state = "error" if self._error else "starting"
        elif bs.phase == "starting":
            self._state = "starting"
        elif bs.phase == "stopping":
            self._state = "stopping"
        elif bs.phase == "failed":
            self._state = "error"
            self._error = self._error or bs.detail or "failed"
        else:
            self._state = "error" if self._error else "offline"
        if (self.state, self._container) != before:
            self.on_change()
        return self.state

    def _begin_op(self, op: Literal["starting", "stopping"] | None) -> None:
        self._op = op
        self._epoch += 1

    async def drain(self, timeout: float) -> bool:
        """Wait (bounded) until no request is in flight; False when work was still running at the end."""

        async def idle() -> bool:
            return not await self.in_flight()

        return await poll_until(idle, timeout)

    async def launch(self) -> None:
        """Start the backend (no-op when already running); the slot shows ``starting`` until
        :meth:`wait_until_ready` ends."""
        self._begin_op("starting")
        self._error = None
        self.on_change()
        try:
            await self.backend.start()
        except SlotError as err:
            self._error = str(err)
            await self._end_op()
            raise

    async def wait_until_ready(self) -> None:
        """Bounded by ``ready_timeout``; on failure the slot shows ``error`` with the reason."""
        try:
            await self.wait_ready(self.cfg.ready_timeout)
        except SlotError as err:
            self._error = str(err)
            raise
        finally:
            await self._end_op()

    async def _end_op(self) -> None:
        """An operation ended (either way): show the slot's real state again."""
        self._begin_op(None)
        await self.refresh()
        self.on_change()

    async def start(self) -> None:
        """Start (if not running) and wait until ready."""
        await self.launch()
        await self.wait_until_ready()

    async def wait_ready(self, timeout: float) -> None:
        """Bounded wait for readiness; fails at once when the process/unit has died."""
        failure: list[str] = []

        async def ready() -> bool:
            bs = await self.backend.state()
            if bs.phase in ("stopped", "failed"):
                failure.append(bs.detail or "stopped")
                return True
            return bs.phase == "running" and await self.probe_ready()

        if not await poll_until(ready, timeout):
            raise SlotError(f"slot {self.name} not ready within {timeout:g}s")
        if failure:
            raise SlotError(f"slot {self.name} exited before it was ready ({failure[0]})")

    async def stop(self) -> None:
        """Stop within ``stop_timeout`` (process backend: then SIGKILL, same bound again)."""
        self._begin_op("stopping")
        self.on_change()
        try:
            await self.backend.stop(self.cfg.stop_timeout)
            self._error = None
        except SlotError as err:
            self._error = str(err)
            raise
        finally:
            await self._end_op()


# --------------------------------------------------------------------------------------- manager


class SlotManager:
    """All configured slots; keeps hub ``slots`` and ``container`` fresh by polling."""

    def __init__(self, slots: list[Slot], hub: StatusHub) -> None:
        self._slots = {s.name: s for s in slots}
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        for slot in slots:
            slot.on_change = self.publish

    @classmethod
    def from_config(cls, config: Config, hub: StatusHub, session: aiohttp.ClientSession) -> SlotManager:
        run_dir = config.server.state_dir / "slots"
        slots = []
        for cfg in config.slots.values():
            backend: SystemdBackend | ProcessBackend
            backend = ProcessBackend(cfg, run_dir) if cfg.backend == "process" else SystemdBackend(cfg)
            if cfg.group == "img":
                url = cfg.url or config.comfyui.url
                ready_path = cfg.ready_path or COMFY_READY_PATH
            else:
                url, ready_path = cfg.url, cfg.ready_path
            slots.append(Slot(cfg, backend, session, url=url, ready_path=ready_path))
        return cls(slots, hub)

    @property
    def slots(self) -> list[Slot]:
        return list(self._slots.values())

    @property
    def llm(self) -> list[Slot]:
        return [s for s in self._slots.values() if s.group == "llm"]

    @property
    def img(self) -> Slot | None:
        return next((s for s in self._slots.values() if s.group == "img"), None)

    def get(self, name: str) -> Slot | None:
        return self._slots.get(name)

    def img_state(self) -> SlotStateName | None:
        """The img slot's state name, for the engine monitor (``engine: starting``)."""
        img = self.img
        return img.state if img is not None else None

    async def running_llm(self) -> list[str]:
        names = [s.name for s in self.llm]
        running = await asyncio.gather(*(s.is_running() for s in self.llm))
        return [n for n, r in zip(names, running, strict=True) if r]

    def publish(self) -> None:
        img = self.img
        self._hub.update(
            slots=tuple(SlotStatus(s.name, s.group, s.state) for s in self._slots.values()),
            container=img.container if img is not None else "absent",
        )

    async def refresh(self) -> None:
        await asyncio.gather(*(s.refresh() for s in self._slots.values()))
        self.publish()

    async def start(self) -> None:
        """Adopt children left by a previous bridge, read every slot's state, start polling."""
        for slot in self._slots.values():
            if isinstance(slot.backend, ProcessBackend):
                await slot.backend.adopt()
        await self.refresh()
        if self._slots and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="slot-poll")

    async def stop(self) -> None:
        """Stop polling; the bridge's own child processes end with it (systemd units stay)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        results = await asyncio.gather(*(s.backend.close() for s in self._slots.values()), return_exceptions=True)
        for slot, res in zip(self._slots.values(), results, strict=True):
            if isinstance(res, Exception):
                _LOG.warning("slot %s: %s", slot.name, res)

    async def _poll(self) -> None:
        interval = min(s.cfg.poll_interval for s in self._slots.values())
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # a probe bug must not end status polling
                _LOG.exception("slot state poll failed")
