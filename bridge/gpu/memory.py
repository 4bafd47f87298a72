"""GPU (GTT) and RAM gauges.

On an AMD iGPU the "VRAM" that matters is GTT (system RAM mapped into the GPU). amdgpu exposes it in
sysfs, which works whoever holds the GPU (so the gauge keeps working in inference mode, with ComfyUI's
models freed); without it we fall back to what ComfyUI reports for its first device. sysfs attributes
are tiny in-memory counters, so reading them inline cannot stall the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..status import Memory
from .gauges import Deadband

DEFAULT_SYSFS_ROOT = Path("/sys/class/drm")
GIB = 1024**3
MEMORY_FIELDS = ("gtt_used", "gtt_total", "ram_used", "ram_total")


@dataclass(frozen=True, slots=True)
class GttReading:
    used: int
    total: int
    card: str


GttSource = Callable[[], GttReading | None]
"""Where the engine monitor gets its GTT reading (amdgpu sysfs in production)."""


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def read_gtt(root: Path | None = DEFAULT_SYSFS_ROOT) -> GttReading | None:
    """GTT use of the amdgpu card with the largest GTT (the one GPU we own); None without amdgpu.

    ``root`` is ``/sys/class/drm`` in production and a temporary directory in tests; None disables it.
    """
    if root is None:
        return None
    best: GttReading | None = None
    try:
        cards = sorted(p for p in root.glob("card*") if p.name[4:].isdigit())
    except OSError:
        return None
    for card in cards:
        used = _read_int(card / "device" / "mem_info_gtt_used")
        total = _read_int(card / "device" / "mem_info_gtt_total")
        if used is None or total is None or total <= 0:
            continue
        if best is None or total > best.total:
            best = GttReading(used, total, card.name)
    return best


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def memory_from(stats: dict[str, Any] | None, gtt: GttReading | None) -> Memory:
    """Combine a ``/system_stats`` body (or None when ComfyUI is away) with a sysfs GTT reading."""
    system = stats.get("system") if isinstance(stats, dict) else None
    system = system if isinstance(system, dict) else {}
    ram_total, ram_free = _int(system.get("ram_total")), _int(system.get("ram_free"))
    ram_used = ram_total - ram_free if ram_total is not None and ram_free is not None else None

    if gtt is not None:
        return Memory(gtt.used, gtt.total, ram_used, ram_total, "sysfs")
    devices = stats.get("devices") if isinstance(stats, dict) else None
    device = devices[0] if isinstance(devices, list) and devices and isinstance(devices[0], dict) else {}
    vram_total, vram_free = _int(device.get("vram_total")), _int(device.get("vram_free"))
    if vram_total is None:
        return Memory(None, None, ram_used, ram_total, None)
    gtt_used = vram_total - vram_free if vram_free is not None else None
    return Memory(gtt_used, vram_total, ram_used, ram_total, "comfyui")


def sysfs_gtt(root: Path = DEFAULT_SYSFS_ROOT) -> GttSource:
    """A :data:`GttSource` over amdgpu sysfs at ``root`` (tests pass a temporary directory)."""
    return partial(read_gtt, root)


class MemoryFilter:
    """The memory gauges as published: each byte count through its own :class:`Deadband`
    (``[telemetry] memory_step_gib`` resolution, small drift at most every ``min_interval``)."""

    def __init__(self, step_gib: float, min_interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._bands = {f: Deadband(step_gib * GIB, min_interval, clock=clock) for f in MEMORY_FIELDS}

    def __call__(self, memory: Memory) -> Memory:
        values = {f: band.as_int(getattr(memory, f)) for f, band in self._bands.items()}
        return Memory(**values, gtt_source=memory.gtt_source)
