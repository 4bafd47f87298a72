"""Idle-restore: back to inference after ``image.idle_restore_minutes`` without image work.

In generation mode, unpinned, with no render through the bridge and no busy ComfyUI queue (direct use
of ComfyUI counts as image activity) for the whole window, the arbiter switches back to inference by
itself (``trigger: "idle"``). This module owns the clock and the loop; what counts as activity and how
a switch starts stay with the arbiter (:class:`IdleHost`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from ..status import Queue, StatusHub

_LOG = logging.getLogger(__name__)


class IdleHost(Protocol):
    """What idle-restore needs from the arbiter."""

    def idle_anchor(self) -> float | None: ...  # last image activity; None = does not apply now
    async def fresh_queue(self) -> Queue: ...  # a fresh GET /queue (unreachable counts as empty)
    async def note_queue_activity(self) -> None: ...  # a busy queue restarts the window
    def restore_inference(self) -> None: ...  # begin the switch to inference (trigger "idle")


class IdleRestore:
    """Wakes at most every ``tick`` seconds (or when woken), publishes ``idle_restore_at`` and fires
    once the window has passed; a window of 0 turns it off."""

    def __init__(self, host: IdleHost, hub: StatusHub, window: float, tick: float) -> None:
        self._host = host
        self._hub = hub
        self._window = window
        self._tick = tick
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def deadline(self) -> float | None:
        if self._window <= 0:
            return None
        anchor = self._host.idle_anchor()
        return None if anchor is None else anchor + self._window

    def wake(self) -> None:
        """Something changed (mode, pin, a render): recompute the deadline now."""
        self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="arbiter-idle")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            deadline = self.deadline()
            self._hub.update(idle_restore_at=deadline)
            self._wake.clear()
            timeout = None if deadline is None else min(self._tick, max(0.0, deadline - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            try:
                await self._check()
            except Exception:  # the idle loop must survive anything
                _LOG.exception("idle-restore tick failed")

    async def _check(self) -> None:
        if self.deadline() is None:
            return
        q = self._hub.status.queue
        if q.running or q.pending:  # direct use of ComfyUI counts as image activity
            await self._host.note_queue_activity()
            return
        deadline = self.deadline()
        if deadline is None or time.time() < deadline:
            return
        fresh = await self._host.fresh_queue()
        if fresh.running or fresh.pending:
            await self._host.note_queue_activity()
            return
        if self.deadline() is None:  # re-check after the await
            return
        _LOG.info("no image activity for %g minutes: restoring inference", self._window / 60)
        self._host.restore_inference()
