"""The arbiter's narrow view of ComfyUI: the three calls a handover needs.

Every client failure becomes :class:`EngineError`, so the arbiter needs no knowledge of the ComfyUI
client's exception family.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..status import Queue


class EngineError(Exception):
    """ComfyUI did not do what the arbiter asked (unreachable, error status)."""


class EngineControl(Protocol):
    """The three ComfyUI calls the arbiter needs."""

    async def queue_counts(self) -> Queue: ...  # fresh GET /queue
    async def cancel_all(self) -> None: ...  # POST /queue {"clear": true}, then POST /interrupt
    async def free(self) -> None: ...  # POST /free {"unload_models": true, "free_memory": true}


class ComfyEngineControl:
    """:class:`EngineControl` over the daemon's ``ComfyUIClient`` (bridge/comfyui_client.py).

    Accepts the client itself or the ``ComfyUI`` facade (whose ``.client`` exists only after its
    start, so it is resolved at each call). Every client failure becomes :class:`EngineError`, so the
    arbiter needs no knowledge of the client's exception family.
    """

    def __init__(self, client: Any) -> None:
        self._source = client

    @property
    def _client(self) -> Any:
        return self._source if hasattr(self._source, "queue") else self._source.client

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
