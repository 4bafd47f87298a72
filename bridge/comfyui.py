"""The daemon's one handle on ComfyUI: HTTP client, websocket follower and engine monitor together.

The rest of the daemon uses only :class:`ComfyUI` and the exception family from
``comfyui_client`` (re-exported here): ``render()`` submits and follows a graph, ``fetch_images()``
downloads the results, ``client`` offers the queue controls (free, interrupt, clear).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from .comfyui_client import (
    ComfyExecutionFailed,
    ComfyInterrupted,
    ComfyLost,
    ComfyRejected,
    ComfyRenderTimeout,
    ComfyServerError,
    ComfyUIClient,
    ComfyUIError,
    ComfyUnreachable,
    ImageRef,
    QueueInfo,
    RunResult,
    Submitted,
)
from .comfyui_ws import ComfyWebsocket
from .config import ComfyConfig
from .engine_monitor import EngineMonitor, SlotStateHook
from .memory import DEFAULT_SYSFS_ROOT
from .snapshot import StatusHub

__all__ = [
    "ComfyExecutionFailed",
    "ComfyInterrupted",
    "ComfyLost",
    "ComfyRejected",
    "ComfyRenderTimeout",
    "ComfyServerError",
    "ComfyUI",
    "ComfyUIClient",
    "ComfyUIError",
    "ComfyUnreachable",
    "ImageRef",
    "QueueInfo",
    "RunResult",
    "Submitted",
]

_LOGGER = logging.getLogger(__name__)


class ComfyUI:
    """Owns the aiohttp session, client, websocket and monitor for one ComfyUI."""

    def __init__(
        self,
        cfg: ComfyConfig,
        hub: StatusHub,
        *,
        client_id: str | None = None,
        sysfs_root: Path | None = DEFAULT_SYSFS_ROOT,
        img_slot_state: SlotStateHook | None = None,
    ) -> None:
        self.cfg = cfg
        self.hub = hub
        self.client_id = client_id or uuid.uuid4().hex
        self._sysfs_root = sysfs_root
        self._img_slot_state = img_slot_state
        self._session: aiohttp.ClientSession | None = None
        self._client: ComfyUIClient | None = None
        self._ws: ComfyWebsocket | None = None
        self._monitor: EngineMonitor | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> ComfyUIClient:
        if self._client is None:
            raise RuntimeError("ComfyUI.start() has not run")
        return self._client

    @property
    def ws(self) -> ComfyWebsocket:
        if self._ws is None:
            raise RuntimeError("ComfyUI.start() has not run")
        return self._ws

    @property
    def monitor(self) -> EngineMonitor:
        if self._monitor is None:
            raise RuntimeError("ComfyUI.start() has not run")
        return self._monitor

    @property
    def reachable(self) -> bool:
        return self._monitor is not None and self._monitor.reachable

    def set_img_slot_state(self, hook: SlotStateHook | None) -> None:
        """Late wiring for the arbiter: lets the engine read ``starting`` while the img slot starts."""
        self._img_slot_state = hook
        if self._monitor is not None:
            self._monitor.img_slot_state = hook
            self._monitor.refresh()

    async def start(self) -> None:
        if self._session is not None:
            return
        # no session-wide timeout: every call sets its own from config
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self._client = ComfyUIClient(self._session, self.cfg, self.client_id)
        self._ws = ComfyWebsocket(self._session, self.cfg, self._client)
        self._monitor = EngineMonitor(
            self.cfg,
            self.hub,
            self._client,
            self._ws,
            sysfs_root=self._sysfs_root,
            img_slot_state=self._img_slot_state,
        )
        await self._ws.start()
        await self._monitor.start()

    async def stop(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self._monitor is not None:
            await self._monitor.stop()
        if self._ws is not None:
            await self._ws.stop()
        if self._session is not None:
            await self._session.close()
        self._session = self._client = self._ws = self._monitor = None

    async def render(self, graph: dict[str, Any], *, timeout: float | None = None) -> RunResult:
        """Submit a graph and follow it to its end.

        If the awaiting task is cancelled (the HTTP client went away) or the render times out, the
        prompt is taken out of ComfyUI (deleted from the queue, interrupted if it runs) so the GPU
        is not kept busy for nobody.
        """
        client, ws = self.client, self.ws
        prompt_id = str(uuid.uuid4())
        ws.track(prompt_id)  # messages may beat POST /prompt's answer
        try:
            submitted = await client.submit(graph, prompt_id=prompt_id)
        except BaseException:
            ws.forget(prompt_id)
            raise
        if submitted.prompt_id != prompt_id:  # a ComfyUI that ignores our prompt_id
            ws.forget(prompt_id)
            prompt_id = submitted.prompt_id
        try:
            return await ws.wait(prompt_id, timeout)
        except (asyncio.CancelledError, ComfyRenderTimeout):
            cleanup = asyncio.create_task(self._abandon(prompt_id), name=f"comfyui-abandon-{prompt_id}")
            self._cleanups.add(cleanup)
            cleanup.add_done_callback(self._cleanups.discard)
            # shielded: a second cancel returns at once but does not stop the cleanup half-way
            await asyncio.shield(cleanup)
            raise

    async def _abandon(self, prompt_id: str) -> None:
        """Delete first (a pending prompt), then interrupt (the running one): in that order nothing
        slips through when it starts in between. Both are no-ops for other prompts."""
        try:
            await self.client.delete_queued([prompt_id])
            await self.client.interrupt(prompt_id)
            _LOGGER.info("abandoned ComfyUI prompt %s", prompt_id)
        except ComfyUIError as err:
            _LOGGER.warning("could not abandon ComfyUI prompt %s: %s", prompt_id, err.message)

    async def fetch_images(self, result: RunResult) -> list[bytes]:
        return list(await asyncio.gather(*(self.client.view(ref) for ref in result.images)))
