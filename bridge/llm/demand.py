"""LLM requests counted by the proxy: in flight per slot, and the bounded FIFO of those waiting for the GPU.

The counters are exact for everything that passes through the bridge, which is why the arbiter's drain
reads them (:class:`~hal0_bridge.gpu.demand.LlmWork`): a request is "in flight" from the moment it is
admitted to its slot until its last byte was passed on (or its client hung up). Admission and the count
happen in one synchronous step, and the arbiter starts a switch in one synchronous step too, so a switch
to generation never misses a request that was just let through.

Requests that cannot go to their slot now (a switch in flight, generation mode, a slot still starting)
wait in one FIFO per slot, at most ``llm.queue_max`` in all (beyond it 429 ``llm.queue_full``). When the
slot can take work, every waiter of that slot is admitted at once, in arrival order.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import errors
from ..errors import ApiError


@dataclass(eq=False)
class Waiter:
    """One request waiting for the GPU; ``wake`` is set when it is admitted, failed or became head."""

    slot: str
    seq: int
    since: float = field(default_factory=time.monotonic)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    admitted: bool = False
    ordinal: int = 0  # the admission's number, once admitted
    error: ApiError | None = None


class Demand:
    """In-flight counters and wait queues for every LLM slot; ``on_change`` fires on every change."""

    def __init__(self, slots: list[str], queue_max: int) -> None:
        self._queue_max = queue_max
        self._in_flight = dict.fromkeys(slots, 0)
        self._idle = {name: asyncio.Event() for name in slots}
        for event in self._idle.values():
            event.set()
        self._queues: dict[str, deque[Waiter]] = {name: deque() for name in slots}
        self._queued = 0
        self._seq = itertools.count(1)
        self._admissions = itertools.count(1)  # numbers every admission: the order calls went to slots
        self.on_change: Callable[[], None] = lambda: None

    # ------------------------------------------------------------------------------ counts

    @property
    def total_in_flight(self) -> int:
        return sum(self._in_flight.values())

    @property
    def queued(self) -> int:
        return self._queued

    def in_flight(self, slot: str) -> int:
        return self._in_flight.get(slot, 0)

    async def wait_idle(self, slot: str, timeout: float) -> bool:
        """Bounded wait until the proxy has nothing in flight on ``slot``; False when time ran out."""
        event = self._idle.get(slot)
        if event is None or event.is_set():
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def begin(self, slot: str) -> int:
        """Count one call in flight on ``slot``; its admission number."""
        self._in_flight[slot] += 1
        self._idle[slot].clear()
        self.on_change()
        return next(self._admissions)

    def end(self, slot: str) -> None:
        self._in_flight[slot] -= 1
        if not self._in_flight[slot]:
            self._idle[slot].set()
        self.on_change()

    # ------------------------------------------------------------------------------ the FIFO

    def has_waiters(self, slot: str) -> bool:
        return bool(self._queues[slot])

    def join(self, slot: str) -> Waiter:
        """Queue a request for ``slot``; 429 ``llm.queue_full`` when ``queue_max`` already wait."""
        if self._queued >= self._queue_max:
            raise ApiError(
                errors.LLM_QUEUE_FULL,
                f"{self._queued} LLM requests are already waiting for the GPU (llm.queue_max)",
                details={"queued": self._queued, "queue_max": self._queue_max},
            )
        waiter = Waiter(slot=slot, seq=next(self._seq))
        self._queues[slot].append(waiter)
        self._queued += 1
        if len(self._queues[slot]) == 1:
            waiter.wake.set()  # head at once
        self.on_change()
        return waiter

    def position(self, waiter: Waiter) -> int:
        """1-based place in its slot's queue (0 once it left)."""
        try:
            return self._queues[waiter.slot].index(waiter) + 1
        except ValueError:
            return 0

    def is_head(self, waiter: Waiter) -> bool:
        queue = self._queues[waiter.slot]
        return bool(queue) and queue[0] is waiter

    def admit_all(self, slot: str) -> int:
        """Admit every waiter of ``slot`` in arrival order (each counted in flight); how many."""
        queue = self._queues[slot]
        admitted = 0
        while queue:
            waiter = queue.popleft()
            self._queued -= 1
            self._in_flight[slot] += 1
            waiter.admitted = True
            waiter.ordinal = next(self._admissions)
            waiter.wake.set()
            admitted += 1
        if admitted:
            self._idle[slot].clear()
            self.on_change()
        return admitted

    def fail(self, error: ApiError, slot: str | None = None) -> None:
        """Answer every waiter (of ``slot``, or of all slots) with ``error``: one failed switch is the
        answer for everyone waiting on it, instead of each of them starting its own."""
        for name, queue in self._queues.items():
            if slot is None or name == slot:
                for waiter in queue:
                    if waiter.error is None:
                        waiter.error = error
                        waiter.wake.set()

    def leave(self, waiter: Waiter) -> None:
        """A waiter stops waiting (admitted, failed, timed out or its client left); wakes the next head."""
        queue = self._queues[waiter.slot]
        if waiter.admitted or waiter not in queue:
            return
        was_head = queue[0] is waiter
        queue.remove(waiter)
        self._queued -= 1
        if was_head and queue:
            queue[0].wake.set()
        self.on_change()
