"""GPU load, temperature and power, where the host has them: amdgpu sysfs and its hwmon.

``/sys/class/drm/cardN/device/gpu_busy_percent`` (0-100) and, under ``device/hwmon/hwmonM/``,
``temp1_input`` (edge temperature, millidegrees C) and ``power1_average`` (or ``power1_input`` on
newer kernels; microwatts). The card read is the amdgpu card with the largest GTT -- the GPU the
bridge owns, the same one the GTT gauge reads (gpu/memory.py). Hosts without amdgpu have no ``gpu``
in the status (null), and nothing polls.

hwmon power goes through the GPU's firmware and may take milliseconds, so reads run in a worker
thread; readings go through the same :class:`~.gauges.Deadband` filters as memory before they reach
the status snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from ..config import TelemetryConfig
from ..status import Gpu, StatusHub
from .gauges import Deadband
from .memory import _read_int, read_gtt

_LOGGER = logging.getLogger(__name__)


def _hwmon(device: Path) -> Path | None:
    try:
        return next(iter(sorted((device / "hwmon").glob("hwmon*"))), None)
    except OSError:
        return None


def read_gpu(root: Path) -> Gpu | None:
    """One reading of the owned amdgpu card, or None when the host has no such card."""
    gtt = read_gtt(root)
    candidates = [root / gtt.card] if gtt is not None else sorted(root.glob("card[0-9]*"))
    for card in candidates:
        device = card / "device"
        busy = _read_int(device / "gpu_busy_percent")
        hwmon = _hwmon(device)
        temp = _read_int(hwmon / "temp1_input") if hwmon else None
        power = None
        if hwmon is not None:
            power = _read_int(hwmon / "power1_average")
            if power is None:
                power = _read_int(hwmon / "power1_input")
        if busy is None and temp is None and power is None:
            continue
        return Gpu(
            card=card.name,
            busy_percent=float(busy) if busy is not None else None,
            temperature_c=temp / 1000.0 if temp is not None else None,
            power_w=power / 1_000_000.0 if power is not None else None,
        )
    return None


class GpuTelemetry:
    """Reads the card every ``gpu_interval`` and publishes it (filtered) as the status ``gpu``."""

    def __init__(
        self, cfg: TelemetryConfig, hub: StatusHub, root: Path, *, reader: Callable[[Path], Gpu | None] = read_gpu
    ) -> None:
        self._cfg = cfg
        self._hub = hub
        self._root = root
        self._read = reader
        self._busy = Deadband(cfg.busy_step, cfg.min_interval)
        self._temp = Deadband(cfg.temperature_step, cfg.min_interval)
        self._power = Deadband(cfg.power_step, cfg.min_interval)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> bool:
        """Start polling when the host has a card to read; False (and no task) when it has none."""
        first = await asyncio.to_thread(self._read, self._root)
        if first is None:
            return False
        self._publish(first)
        self._task = asyncio.create_task(self._run(), name="gpu-telemetry")
        _LOGGER.info("GPU telemetry from %s every %g s", first.card, self._cfg.gpu_interval)
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _publish(self, reading: Gpu | None) -> None:
        if reading is None:
            self._hub.update(gpu=None)
            return
        self._hub.update(
            gpu=Gpu(
                card=reading.card,
                busy_percent=self._busy(reading.busy_percent),
                temperature_c=self._temp(reading.temperature_c),
                power_w=self._power(reading.power_w),
            )
        )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._cfg.gpu_interval)
            try:
                self._publish(await asyncio.to_thread(self._read, self._root))
            except Exception:  # noqa: BLE001 - a bad read must not end telemetry
                _LOGGER.exception("GPU telemetry read failed")
