"""The arbiter's narrow view of ComfyUI: the calls a handover makes and what it observes.

Commands (``queue_counts``, ``cancel_all``, ``free``) and observations (what the websocket sees running,
the newest history entry, the GTT reading) are all the arbiter and its release phase know of ComfyUI.
Every client failure becomes :class:`EngineError`, so the arbiter needs no knowledge of the ComfyUI
client's exception family.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from ..status import Queue
from .memory import GttReading


class EngineError(Exception):
    """ComfyUI did not do what the arbiter asked (unreachable, error status)."""


class EngineControl(Protocol):
    """What the arbiter asks of ComfyUI and what it reads back."""

    async def queue_counts(self) -> Queue: ...  # fresh GET /queue
    async def cancel_all(self) -> None: ...  # POST /queue {"clear": true}, then POST /interrupt
    async def free(self) -> None: ...  # POST /free {"unload_models": true, "free_memory": true}
    async def newest_prompt(self) -> str | None: ...  # GET /history?max_items=1: the newest finished prompt

    def socket_busy(self) -> bool | None: ...  # the websocket's view: a prompt runs/queued; None = cannot see
    def busy_since(self, since: float) -> bool: ...  # the websocket saw a prompt after monotonic ``since``
    def gtt(self) -> GttReading | None: ...  # amdgpu sysfs GTT now, the monitor's source; None without it
    async def wait_change(self, timeout: float) -> None: ...  # until the websocket reports a change, or timeout


class ComfyEngineControl:
    """:class:`EngineControl` over the ``ComfyUI`` facade (client, websocket, GTT source) or, where no
    facade exists (benchmarks), a bare ``ComfyUIClient``: then nothing is observed beyond HTTP.

    The facade's ``.client`` may be replaced before its start, so it is resolved at each call.
    """

    def __init__(self, source: Any) -> None:
        self._source = source
        self._changed = asyncio.Event()
        ws = getattr(source, "ws", None)
        if ws is not None:
            ws.on_queue.append(self._on_change)
            ws.on_active.append(self._on_change)
            ws.on_connection.append(self._on_change)

    @property
    def _client(self) -> Any:
        return self._source if hasattr(self._source, "queue") else self._source.client

    def _on_change(self, *_: object) -> None:
        self._changed.set()

    async def queue_counts(self) -> Queue:
        try:
            q = await self._client.queue()
        except Exception as err:
            raise EngineError(f"GET /queue failed: {err}") from err
        return Queue(running=len(q.running_ids), pending=len(q.pending_ids))

    async def cancel_all(self) -> None:
        try:
            await self._client.clear_queue()
            await self._client.interrupt()
        except Exception as err:
            raise EngineError(f"cancelling renders failed: {err}") from err

    async def free(self) -> None:
        try:
            await self._client.free(unload_models=True, free_memory=True)
        except Exception as err:
            raise EngineError(f"ComfyUI /free failed: {err}") from err

    async def newest_prompt(self) -> str | None:
        try:
            newest: str | None = await self._client.newest_prompt()
        except Exception as err:
            raise EngineError(f"GET /history failed: {err}") from err
        return newest

    def socket_busy(self) -> bool | None:
        ws = getattr(self._source, "ws", None)
        if ws is None or not ws.connected:
            return None
        return ws.active_prompt is not None or bool(ws.queue_remaining)

    def busy_since(self, since: float) -> bool:
        ws = getattr(self._source, "ws", None)
        last = None if ws is None else ws.last_busy
        return last is not None and last > since

    def gtt(self) -> GttReading | None:
        source = getattr(self._source, "gtt", None)
        return source() if source is not None else None

    async def wait_change(self, timeout: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout, 0.0)):
                await self._changed.wait()
