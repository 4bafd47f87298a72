"""The daemon's one handle on ComfyUI: HTTP client, websocket follower and engine monitor together.

The rest of the daemon holds a :class:`ComfyUI`: ``render()`` submits and follows a graph,
``fetch_images()`` downloads the results, ``client`` offers the queue controls (free, interrupt,
clear). Failures are the exception family of :mod:`.errors`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp

from ..config import ComfyConfig
from ..gpu.memory import GttSource, MemoryFilter
from ..status import StatusHub
from .client import ComfyUIClient, RunResult
from .errors import ComfyRenderTimeout, ComfyUIError, ComfyUnreachable
from .monitor import EngineMonitor, SlotStateHook
from .outputs import TempOutputs
from .previews import PreviewFrame
from .websocket import ComfyWebsocket

_LOGGER = logging.getLogger(__name__)


class ComfyUI:
    """Owns the aiohttp session, client, websocket and monitor for one ComfyUI.

    Everything exists from construction (so other parts can be wired to ``.client`` before the event
    loop runs); the session and background tasks live between :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        cfg: ComfyConfig,
        hub: StatusHub,
        *,
        client_id: str | None = None,
        gtt: GttSource | None = None,
        img_slot_state: SlotStateHook | None = None,
        memory_filter: MemoryFilter | None = None,
    ) -> None:
        self.cfg = cfg
        self.hub = hub
        self.client_id = client_id or uuid.uuid4().hex
        self.gtt = gtt  # the one GTT reading (amdgpu sysfs) the monitor and the arbiter's release share
        self.client = ComfyUIClient(None, cfg, self.client_id)
        self.ws = ComfyWebsocket(self.client, cfg)
        self.outputs = TempOutputs(self.client, cfg.temp_dir)
        self.monitor = EngineMonitor(
            cfg, hub, self.client, self.ws, gtt=gtt, img_slot_state=img_slot_state, memory_filter=memory_filter
        )
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def reachable(self) -> bool:
        return self.monitor.reachable

    def set_img_slot_state(self, hook: SlotStateHook | None) -> None:
        """Late wiring for the arbiter: lets the engine read ``starting`` while the img slot starts."""
        self.monitor.img_slot_state = hook
        self.monitor.refresh()

    async def start(self) -> None:
        if self.client.session is not None:
            return
        # no session-wide timeout: every call sets its own from config
        self.client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        await self.ws.start()
        await self.monitor.start()

    async def stop(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        await self.monitor.stop()
        await self.ws.stop()
        session, self.client.session = self.client.session, None
        if session is not None:
            await session.close()

    async def render(
        self,
        graph: dict[str, Any],
        *,
        timeout: float | None = None,
        on_preview: Callable[[PreviewFrame], None] | None = None,
    ) -> RunResult:
        """Submit a graph and follow it to its end; ``on_preview`` gets its latent previews (ComfyUI
        sends them when started with ``--preview-method``), on the websocket reader: keep it quick.

        If the awaiting task is cancelled (the HTTP client went away) or the render times out, the
        prompt is taken out of ComfyUI (deleted from the queue, interrupted if it runs) so the GPU
        is not kept busy for nobody.
        """
        client, ws = self.client, self.ws
        prompt_id = str(uuid.uuid4())  # ours, so we can take it back even if submit never answers
        ws.track(prompt_id).on_preview = on_preview  # messages may beat POST /prompt's answer
        try:
            try:
                submitted = await client.submit(graph, prompt_id=prompt_id)
            except ComfyUnreachable:
                # a timeout may hide a prompt ComfyUI did queue: take it back in the background
                self._spawn_abandon(prompt_id)
                raise
            if submitted.prompt_id != prompt_id:  # a ComfyUI that ignores our prompt_id
                ws.forget(prompt_id)
                prompt_id = submitted.prompt_id
                ws.track(prompt_id).on_preview = on_preview
            return await ws.wait(prompt_id, timeout)
        except (asyncio.CancelledError, ComfyRenderTimeout):
            # cancelled mid-submit too: ComfyUI may queue it after we stopped listening
            await self._abandon_shielded(prompt_id)
            raise
        finally:
            ws.forget(prompt_id)

    def _spawn_abandon(self, prompt_id: str) -> asyncio.Task[None]:
        cleanup = asyncio.create_task(self._abandon(prompt_id), name=f"comfyui-abandon-{prompt_id}")
        self._cleanups.add(cleanup)
        cleanup.add_done_callback(self._cleanups.discard)
        return cleanup

    async def _abandon_shielded(self, prompt_id: str) -> None:
        """Run the cleanup as its own task: a second cancel returns at once, the cleanup goes on."""
        await asyncio.shield(self._spawn_abandon(prompt_id))

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
