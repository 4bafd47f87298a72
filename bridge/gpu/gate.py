"""The image route's one narrow view of the GPU arbiter.

The image pipeline only needs two things from whoever owns the GPU: "make sure the GPU is in
generation mode (waiting for a switch already in flight)" and "this render is in-flight image work"
(so idle-restore never fires under it). The arbiter implements both; without an img slot configured
there is nothing to arbitrate and :class:`DirectGate` lets renders go straight to ComfyUI.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import AsyncIterator, Protocol


class GpuGate(Protocol):
    async def ensure_generation(self, trigger: str = "image") -> None: ...

    def image_activity(self) -> AbstractAsyncContextManager[None]: ...


class DirectGate:
    """No arbiter: ComfyUI is assumed to own the GPU already."""

    async def ensure_generation(self, trigger: str = "image") -> None:
        return None

    @asynccontextmanager
    async def image_activity(self) -> AsyncIterator[None]:
        yield
