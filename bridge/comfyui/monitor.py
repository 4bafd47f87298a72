"""Keeps the status snapshot's engine fields true: probes plus websocket events -> ``StatusHub``.

Short-timeout probes (``/system_stats`` for reachability and memory, ``/queue`` for the queue) run
one after another in a single loop every ``probe_interval``, so they can never overlap or pile up; a
dead or blackholed ComfyUI costs at most ``probe_timeout`` per probe and never blocks a reader,
because readers only ever see the snapshot. Websocket events (queue length, progress, the prompt that
runs, connection changes) update the snapshot at once, between probes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ..config import ComfyConfig
from ..gpu.memory import GttSource, MemoryFilter, memory_from
from ..status import Engine, Memory, Progress, Queue, StatusHub
from .client import ComfyUIClient
from .errors import ComfyUIError
from .websocket import ComfyWebsocket

_LOGGER = logging.getLogger(__name__)

SlotStateHook = Callable[[], str | None]


class EngineMonitor:
    """Feeds ``engine``, ``reachable``, ``queue``, ``progress`` and ``memory`` of the snapshot.

    ``img_slot_state`` (optional) returns the img slot's state name; while ComfyUI does not answer
    and the slot is ``starting``, the engine reads ``starting`` instead of ``stopped``.
    """

    def __init__(
        self,
        cfg: ComfyConfig,
        hub: StatusHub,
        client: ComfyUIClient,
        ws: ComfyWebsocket,
        *,
        gtt: GttSource | None = None,
        img_slot_state: SlotStateHook | None = None,
        memory_filter: MemoryFilter | None = None,
    ) -> None:
        self._cfg = cfg
        self._memory_filter = memory_filter  # None: raw readings (each probe may change the snapshot)
        self._hub = hub
        self._client = client
        self._ws = ws
        self._gtt = gtt
        self.img_slot_state = img_slot_state
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._reachable = False
        self._queue = Queue()
        self._memory = Memory()
        self._progress: Progress | None = None
        # called after every probe cycle: lets a test observe the cadence without a counter in here
        self.on_probe: list[Callable[[], None]] = []

    @property
    def reachable(self) -> bool:
        return self._reachable

    async def start(self) -> None:
        if self._task is not None:
            return
        self._ws.on_queue.append(self._on_queue)
        self._ws.on_progress.append(self._on_progress)
        self._ws.on_active.append(self._on_active)
        self._ws.on_connection.append(self._on_connection)
        self._task = asyncio.create_task(self._run(), name="comfyui-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        for listeners, cb in (
            (self._ws.on_queue, self._on_queue),
            (self._ws.on_progress, self._on_progress),
            (self._ws.on_active, self._on_active),
            (self._ws.on_connection, self._on_connection),
        ):
            with contextlib.suppress(ValueError):
                listeners.remove(cb)  # type: ignore[arg-type]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def refresh(self) -> None:
        """Probe now instead of at the next interval (coalesced: at most one extra probe)."""
        self._kick.set()

    async def _run(self) -> None:
        while True:
            self._kick.clear()
            try:
                await self._probe()
            except Exception:  # noqa: BLE001 - a probe bug must not end monitoring
                _LOGGER.exception("ComfyUI probe failed unexpectedly")
            for listener in list(self.on_probe):
                listener()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cfg.probe_interval):
                    await self._kick.wait()

    async def _probe(self) -> None:
        gtt = self._gtt() if self._gtt is not None else None
        try:
            stats = await self._client.system_stats()
        except ComfyUIError as err:
            if self._reachable:
                _LOGGER.warning("ComfyUI stopped answering: %s", err.message)
            self._reachable = False
            self._queue = Queue()
            self._progress = None
            self._memory = memory_from(None, gtt)
            self._publish()
            return
        if not self._reachable:
            _LOGGER.info("ComfyUI answers at %s", self._cfg.url)
            if not self._ws.connected:
                self._ws.reconnect_now()
        self._reachable = True
        self._memory = memory_from(stats, gtt)
        try:
            info = await self._client.queue(timeout=self._cfg.probe_timeout)
        except ComfyUIError as err:
            _LOGGER.debug("queue probe failed: %s", err.message)  # keep the last known queue
        else:
            self._queue = Queue(info.running, info.pending)
            if not info.running_ids and not info.pending_ids:
                self._progress = None
        self._publish()

    def _engine(self) -> Engine:
        if self._reachable:
            busy = self._queue.running > 0 or self._ws.active_prompt is not None
            return "generating" if busy else "running"
        state = self.img_slot_state() if self.img_slot_state is not None else None
        return "starting" if state == "starting" else "stopped"

    def _publish(self) -> None:
        self._hub.update(
            engine=self._engine(),
            reachable=self._reachable,
            queue=self._queue,
            progress=self._progress if self._reachable else None,
            memory=self._memory_filter(self._memory) if self._memory_filter is not None else self._memory,
        )

    # -- websocket events ---------------------------------------------------------------------------

    def _on_queue(self, remaining: int) -> None:
        # ComfyUI runs one prompt at a time: queue_remaining = running (0 or 1) + pending
        running = 1 if remaining > 0 else 0
        self._queue = Queue(running, remaining - running)
        self._reachable = True  # it just talked to us
        self._publish()

    def _on_progress(self, progress: Progress | None) -> None:
        self._progress = progress
        if progress is not None:
            self._reachable = True
        self._publish()

    def _on_active(self, prompt_id: str | None) -> None:
        self._publish()

    def _on_connection(self, connected: bool) -> None:
        # either way the truth is one probe away: ComfyUI back, or maybe gone
        self.refresh()
