"""One slot: a GPU consumer the arbiter starts and stops (an LLM server or the ComfyUI img slot).

A :class:`Slot` is a *backend* that runs it (a systemd unit, a child process the bridge owns, or a
podman/docker container)
plus the HTTP view of it: readiness, and for llama.cpp slots the in-flight work from ``GET /slots``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal

import aiohttp

from ...config import SlotConfig
from ...status import Container, SlotStateName
from .base import SlotBackend, SlotError, poll_until
from .process import ProcessBackend


class Slot:
    """One GPU consumer: backend + readiness + in-flight view, and the state shown in status."""

    def __init__(
        self,
        cfg: SlotConfig,
        backend: SlotBackend,
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
        self._container = bs.container_view
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
