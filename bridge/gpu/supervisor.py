"""Slot supervision: a slot that was ready and then died by itself is restarted, with backoff.

A process slot's death is noticed at once (``ProcessBackend.on_exit`` -> ``Slot.refresh`` ->
``Slot.on_died``), a systemd unit's at the next state poll. Whether the slot should run is the
arbiter's call (:class:`SupervisorHost`): an LLM slot in a settled inference mode whose name is in the
saved set, the img slot always (ComfyUI stays resident in both modes). Restarts wait
``restart_backoff`` seconds, doubling per failed attempt up to ``restart_backoff_max``; the count starts
again once a slot has stayed up for ``restart_backoff_max``. A switch pauses supervision (it owns the
slots while it runs) and resumes it when it ends. Events: ``slot_failed`` (each death or failed
attempt), ``slot_restarted`` (an LLM slot back) and ``img_slot_restarted`` (the img slot back).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Protocol

from ..config import ArbiterConfig
from ..status import StatusHub
from .slots.base import SlotError
from .slots.manager import SlotManager
from .slots.slot import Slot

_LOG = logging.getLogger(__name__)


WATCH_INTERVAL = 1.0  # seconds between the host's health looks (e.g. a ComfyUI that stopped answering)


class SupervisorHost(Protocol):
    """What supervision needs from the arbiter."""

    def should_run(self, slot: Slot) -> bool: ...
    def watch(self) -> None: ...  # called every WATCH_INTERVAL (at most): the host's own health rules


class Supervisor:
    """Restarts slots that died by themselves; never while a switch owns the slots."""

    def __init__(self, host: SupervisorHost, hub: StatusHub, slots: SlotManager, cfg: ArbiterConfig) -> None:
        self._host = host
        self._hub = hub
        self._slots = slots
        self._first = cfg.restart_backoff
        self._max = cfg.restart_backoff_max
        self._dead: dict[str, str] = {}  # died and not back yet: name -> why
        self._attempts: dict[str, int] = {}  # failed restarts in a row
        self._up_since: dict[str, float] = {}  # monotonic: when a slot was last seen back up
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._paused = 0
        self._running = False
        self._watcher: asyncio.Task[None] | None = None
        for slot in slots.slots:
            slot.on_died = self._on_died

    @property
    def dead(self) -> frozenset[str]:
        """Slots that died by themselves and are not back: kept in the saved set, retried by a switch."""
        return frozenset(self._dead)

    def start(self, watch_interval: float = WATCH_INTERVAL) -> None:
        self._running = True
        self._review()
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch(watch_interval), name="supervise-watch")

    async def stop(self) -> None:
        self._running = False
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await self._cancel_all()

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self._host.watch()
            except Exception:  # the watch must survive a bug in one look
                _LOG.exception("supervisor watch failed")

    async def pause(self) -> None:
        """A switch begins: restarts in flight are called off (the switch decides about every slot)."""
        self._paused += 1
        await self._cancel_all()

    def resume(self) -> None:
        """A switch ended: slots it brought back are alive again; the rest are looked at anew."""
        self._paused = max(0, self._paused - 1)
        self._review()

    # ------------------------------------------------------------------------------ deaths

    def _on_died(self, slot: Slot, detail: str) -> None:
        self._dead[slot.name] = detail
        up = self._up_since.pop(slot.name, None)
        if up is not None and time.monotonic() - up >= self._max:
            self._attempts.pop(slot.name, None)  # it had been fine for a while: back to the short delay
        _LOG.warning("slot %s died by itself: %s", slot.name, detail)
        self._schedule(slot, detail)

    def _review(self) -> None:
        for name in list(self._dead):
            slot = self._slots.get(name)
            if slot is None or slot.state == "ready":
                self._dead.pop(name, None)
                continue
            self._schedule(slot, self._dead[name], announce=False)

    def _delay(self, name: str) -> float:
        return min(self._first * 2.0 ** self._attempts.get(name, 0), self._max)

    def _schedule(self, slot: Slot, detail: str, *, announce: bool = True) -> None:
        runs = self._running and not self._paused and self._host.should_run(slot)
        delay = self._delay(slot.name) if runs else None
        if announce:
            self._hub.emit(
                "slot_failed", slot=slot.name, group=slot.group, detail=detail,
                attempt=self._attempts.get(slot.name, 0), restart_in=delay,
            )  # fmt: skip
        if delay is None or slot.name in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._restart(slot, delay), name=f"supervise-{slot.name}")
        self._tasks[slot.name] = task
        task.add_done_callback(functools.partial(self._forget, slot.name))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]

    async def _restart(self, slot: Slot, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._paused or not self._host.should_run(slot):
            return
        attempt = self._attempts.get(slot.name, 0) + 1
        try:
            await slot.launch()
            await slot.wait_until_ready()
        except SlotError as err:
            self._attempts[slot.name] = attempt
            self._dead[slot.name] = str(err)
            _LOG.warning("slot %s: restart %d failed: %s", slot.name, attempt, err)
            self._tasks.pop(slot.name, None)
            self._schedule(slot, str(err))
            return
        except asyncio.CancelledError:  # a switch took over: leave the slot showing its real state
            with contextlib.suppress(Exception):
                await asyncio.shield(slot.end_op())
            raise
        reason = self._dead.pop(slot.name, "died")
        self._attempts[slot.name] = attempt  # restarts in a row: a crash loop backs off too
        self._up_since[slot.name] = time.monotonic()
        event = "img_slot_restarted" if slot.group == "img" else "slot_restarted"
        _LOG.info("slot %s restarted (attempt %d) after: %s", slot.name, attempt, reason)
        self._hub.emit(event, slot=slot.name, group=slot.group, attempt=attempt, reason=reason, trigger="supervisor")

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
