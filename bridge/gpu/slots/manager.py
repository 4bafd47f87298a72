"""All configured slots: built from config, polled into the status hub, the arbiter's few verbs.

:class:`SlotManager` keeps hub ``slots`` and the img slot's ``container`` fresh by polling every
slot's backend and readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import aiohttp

from ...config import Config, SlotConfig
from ...status import SlotStateName, SlotStatus, StatusHub
from .base import SlotBackend
from .container import ContainerBackend
from .process import ProcessBackend
from .slot import Slot
from .systemd import SystemdBackend

_LOG = logging.getLogger(__name__)

COMFY_READY_PATH = "/system_stats"


def _backend(cfg: SlotConfig, run_dir: Path) -> SlotBackend:
    """The slot's ``backend`` key: ``systemd`` (default), ``process`` or ``container``."""
    if cfg.backend == "process":
        return ProcessBackend(cfg, run_dir)
    if cfg.backend == "container":
        return ContainerBackend(cfg)
    return SystemdBackend(cfg)


class SlotManager:
    """All configured slots; keeps hub ``slots`` and ``container`` fresh by polling."""

    def __init__(self, slots: list[Slot], hub: StatusHub) -> None:
        self._slots = {s.name: s for s in slots}
        self._hub = hub
        self._task: asyncio.Task[None] | None = None
        for slot in slots:
            slot.on_change = self.publish

    @classmethod
    def from_config(cls, config: Config, hub: StatusHub, session: aiohttp.ClientSession) -> SlotManager:
        run_dir = config.server.state_dir / "slots"
        slots = []
        for cfg in config.slots.values():
            backend = _backend(cfg, run_dir)
            if cfg.group == "img":
                url = cfg.url or config.comfyui.url
                ready_path = cfg.ready_path or COMFY_READY_PATH
            else:
                url, ready_path = cfg.url, cfg.ready_path
            slots.append(Slot(cfg, backend, session, url=url, ready_path=ready_path))
        return cls(slots, hub)

    @property
    def slots(self) -> list[Slot]:
        return list(self._slots.values())

    @property
    def llm(self) -> list[Slot]:
        return [s for s in self._slots.values() if s.group == "llm"]

    @property
    def img(self) -> Slot | None:
        return next((s for s in self._slots.values() if s.group == "img"), None)

    def get(self, name: str) -> Slot | None:
        return self._slots.get(name)

    def img_state(self) -> SlotStateName | None:
        """The img slot's state name, for the engine monitor (``engine: starting``)."""
        img = self.img
        return img.state if img is not None else None

    async def running_llm(self) -> list[str]:
        names = [s.name for s in self.llm]
        running = await asyncio.gather(*(s.is_running() for s in self.llm))
        return [n for n, r in zip(names, running, strict=True) if r]

    def publish(self) -> None:
        img = self.img
        self._hub.update(
            slots=tuple(SlotStatus(s.name, s.group, s.state) for s in self._slots.values()),
            container=img.container if img is not None else "absent",
        )

    async def refresh(self) -> None:
        await asyncio.gather(*(s.refresh() for s in self._slots.values()))
        self.publish()

    async def start(self) -> None:
        """Adopt children left by a previous bridge, read every slot's state, start polling."""
        for slot in self._slots.values():
            if isinstance(slot.backend, ProcessBackend):
                await slot.backend.adopt()
        await self.refresh()
        if self._slots and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="slot-poll")

    async def stop(self) -> None:
        """Stop polling; the bridge's own child processes end with it (systemd units and containers stay)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        results = await asyncio.gather(*(s.backend.close() for s in self._slots.values()), return_exceptions=True)
        for slot, res in zip(self._slots.values(), results, strict=True):
            if isinstance(res, Exception):
                _LOG.warning("slot %s: %s", slot.name, res)

    async def _poll(self) -> None:
        interval = min(s.cfg.poll_interval for s in self._slots.values())
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # a probe bug must not end status polling
                _LOG.exception("slot state poll failed")
