"""The one in-memory status snapshot, and the change feed that REST, SSE and MQTT read.

State flows one way: sources (ComfyUI websocket and probes, the arbiter, slots) call
:meth:`StatusHub.update`; readers take :attr:`StatusHub.status` or :meth:`StatusHub.subscribe` to
changes and events. Nobody else holds status, so ``GET /api/comfyui/status`` never waits on I/O.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Mode = Literal["inference", "generation"]
Engine = Literal["generating", "running", "starting", "stopped"]
Container = Literal["running", "exited", "absent"]
SlotStateName = Literal["offline", "starting", "ready", "stopping", "error"]


@dataclass(frozen=True, slots=True)
class Memory:
    """Bytes; ``None`` where unknown. GTT comes from amdgpu sysfs when present, else ComfyUI's device."""

    gtt_used: int | None = None
    gtt_total: int | None = None
    ram_used: int | None = None
    ram_total: int | None = None
    gtt_source: Literal["sysfs", "comfyui"] | None = None


@dataclass(frozen=True, slots=True)
class Queue:
    running: int = 0
    pending: int = 0


@dataclass(frozen=True, slots=True)
class Progress:
    prompt_id: str
    step: int
    steps: int
    it_s: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True, slots=True)
class Switchover:
    active: bool = False
    target: Mode | None = None
    error: str | None = None
    trigger: str | None = None  # "api", "image", "llm", "mqtt", "idle", "recovery"
    started_at: float | None = None
    finished_at: float | None = None
    # seconds per phase: drain, stop, start, ready; to inference also release (ComfyUI really letting go)
    phases: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # what went wrong without failing the switch (e.g. an img slot restart)


@dataclass(frozen=True, slots=True)
class Gpu:
    """amdgpu telemetry of the owned card (gpu/telemetry.py); ``None`` parts where the host has none."""

    card: str
    busy_percent: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None


@dataclass(frozen=True, slots=True)
class SlotStatus:
    name: str
    group: Literal["llm", "img"]
    state: SlotStateName


@dataclass(frozen=True, slots=True)
class LlmStatus:
    """The LLM proxy: requests being answered by a slot, requests waiting for the GPU, models served."""

    in_flight: int = 0
    queued: int = 0
    models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Status:
    mode: Mode = "inference"
    engine: Engine = "stopped"
    reachable: bool = False
    container: Container = "absent"
    memory: Memory = field(default_factory=Memory)
    queue: Queue = field(default_factory=Queue)
    progress: Progress | None = None
    switchover: Switchover = field(default_factory=Switchover)
    pinned: bool = False
    idle_restore_at: float | None = None
    slots: tuple[SlotStatus, ...] = ()
    llm: LlmStatus = field(default_factory=LlmStatus)
    # idle-restore switches that failed in a row (0 after any successful switch to inference)
    idle_restore_failures: int = 0
    gpu: Gpu | None = None  # null where the host has no amdgpu telemetry
    updated_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["slots"] = list(data["slots"])
        data["switchover"]["warnings"] = list(data["switchover"]["warnings"])
        data["llm"]["models"] = list(data["llm"]["models"])
        return data


@dataclass(frozen=True, slots=True)
class Message:
    """One item of the change feed: ``kind`` "status" carries the snapshot, "event" an event."""

    kind: Literal["status", "event"]
    data: dict[str, Any]


class Subscription:
    """A bounded, coalescing feed: a reader that lags only ever sees the newest status."""

    def __init__(self, hub: StatusHub, max_items: int, reader: str = "") -> None:
        self._hub = hub
        self.reader = reader  # who reads ("sse", "mqtt", ...): counted per reader for /metrics
        self._items: deque[Message] = deque(maxlen=max_items)
        self._ready = asyncio.Event()

    def _push(self, message: Message) -> None:
        if message.kind == "status" and self._items and self._items[-1].kind == "status":
            self._items[-1] = message
        else:
            self._items.append(message)
        self._ready.set()

    async def get(self) -> Message:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def close(self) -> None:
        self._hub._subscribers.discard(self)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            yield await self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StatusHub:
    def __init__(self) -> None:
        self._status = Status()
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[Message], None]] = []
        self._json: bytes | None = None

    @property
    def status(self) -> Status:
        return self._status

    def status_json(self) -> bytes:
        """The snapshot encoded once per change: ``GET /api/comfyui/status`` is the hot path."""
        if self._json is None:
            self._json = json.dumps(self._status.to_dict(), separators=(",", ":")).encode()
        return self._json

    def update(self, **changes: Any) -> bool:
        """Apply field changes; notify subscribers only when something really changed."""
        if all(getattr(self._status, k) == v for k, v in changes.items()):
            return False
        self._status = replace(self._status, **changes, updated_at=time.time())
        self._json = None
        self._publish(Message("status", self._status.to_dict()))
        return True

    def emit(self, event_type: str, **data: Any) -> None:
        """An event (not state): switch started/finished/failed, image generated, render failed."""
        self._publish(Message("event", {"type": event_type, "time": time.time(), **data}))

    def subscribe(self, *, max_items: int = 256, initial: bool = True, reader: str = "") -> Subscription:
        sub = Subscription(self, max_items, reader)
        self._subscribers.add(sub)
        if initial:
            sub._push(Message("status", self._status.to_dict()))
        return sub

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def reader_count(self, reader: str) -> int:
        return sum(1 for sub in self._subscribers if sub.reader == reader)

    def listen(self, callback: Callable[[Message], None]) -> None:
        """Call ``callback`` synchronously with every message, nothing coalesced or dropped (metrics
        counters must see every event). It must be quick and must not raise; it is not a subscriber."""
        self._listeners.append(callback)

    def _publish(self, message: Message) -> None:
        for listener in self._listeners:
            listener(message)
        for sub in list(self._subscribers):
            sub._push(message)
