"""The ``process`` backend: the bridge runs the slot's command itself, as a child it owns."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from ...config import SlotConfig
from .base import BackendState, SlotError, poll_until
from .logs import rotate_if_needed

_LOG = logging.getLogger(__name__)

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
        self._adopted_lost = False  # an adopted child vanished without our stop (no exit code to read)
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
            self._adopted_lost = not self._stopping
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
        self._adopted_lost = False
        self.last_exit = None
        argv = list(self._cfg.command)
        await asyncio.to_thread(self._pidfile.parent.mkdir, parents=True, exist_ok=True)
        await self.rotate_log()
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

    async def rotate_log(self) -> None:
        """Keep ``NAME.log`` under ``log_max_bytes`` with ``log_backups`` old ones (:mod:`.logs`)."""
        try:
            if await asyncio.to_thread(rotate_if_needed, self._logfile, self._cfg.log_max_bytes, self._cfg.log_backups):
                _LOG.info("slot %s: log rotated (over %d bytes)", self._cfg.name, self._cfg.log_max_bytes)
        except OSError as err:
            _LOG.warning("slot %s: cannot rotate %s: %s", self._cfg.name, self._logfile, err)

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
        if self._ever_ran and not self._stopping and (code is not None or self._adopted_lost):
            # nobody but the bridge stops its children: any exit it did not ask for is a failure, even
            # code 0 (a llama-server killed with SIGTERM by someone else exits 0)
            detail = f"exited with code {code}" if code is not None else "the adopted process is gone"
            return BackendState("failed", detail, self._ever_ran)
        return BackendState("stopped", "", self._ever_ran)

    async def close(self) -> None:
        """The bridge owns its children: they end with it."""
        await self.stop(self._cfg.stop_timeout)
