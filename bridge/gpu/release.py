"""The release phase of a switch to inference: wait until ComfyUI has really let go of the GPU.

ComfyUI's ``POST /free`` only sets flags; its worker applies them once the running prompt has ended
(main.py ``prompt_worker``: ``e.execute(...)``, ``q.task_done(...)``, the ``executing {node: null}``
message, *then* ``q.get_flags()`` -> ``unload_all_models()`` and ``soft_empty_cache()``). A VAE decode or
a checkpoint load cannot be interrupted, so after a forced switch ComfyUI may hold its memory for a
while yet. LLM slots start only when this module says the GPU is free:

1. **idle**: ``GET /queue`` shows nothing running or pending, and the websocket (when connected)
   agrees: no prompt of ours executing, ``queue_remaining`` 0. Websocket events wake the wait early.
2. **memory** (hosts with amdgpu sysfs, and only when ComfyUI may hold models at all): GTT use has
   fallen by ``release_gtt_drop`` of what it was when the switch began, or has not fallen for
   ``release_settle`` seconds. The reading is the engine monitor's own (:mod:`.memory`).

Both are bounded together by ``release_timeout``; what then happens (the img slot is restarted) is the
arbiter's decision, this module only reports.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from ..config import ArbiterConfig
from .engine import EngineControl, EngineError
from .memory import GttReading

IDLE_POLL_FIRST = 0.01  # first re-check of /queue; websocket events cut every wait short
IDLE_POLL_MAX = 0.25
IDLE_POLL_FACTOR = 1.5
GTT_POLL = 0.01  # sysfs attributes are in-memory counters: cheap to read often
GTT_NOISE_BYTES = 16 * 1024 * 1024  # a fall smaller than this is not "still falling"
GIB = 1024**3


@dataclass(frozen=True, slots=True)
class ReleaseSettings:
    timeout: float
    gtt_drop: float
    settle: float

    @classmethod
    def from_config(cls, cfg: ArbiterConfig) -> ReleaseSettings:
        return cls(cfg.release_timeout, cfg.release_gtt_drop, cfg.release_settle)


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """``released`` and, either way, how we know (or what was still holding on at the deadline)."""

    released: bool
    how: str
    waited: float


def _gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


async def _busy(engine: EngineControl) -> str | None:
    """Why ComfyUI is not idle yet, or None. /queue first: after its await the socket's view is fresher."""
    try:
        queue = await engine.queue_counts()
    except EngineError as err:
        return f"it does not answer ({err})"
    if queue.running or queue.pending:
        return f"GET /queue shows {queue.running} running, {queue.pending} pending"
    if engine.socket_busy():
        return "the websocket still reports a prompt executing"
    return None


async def wait_released(
    engine: EngineControl,
    settings: ReleaseSettings,
    *,
    gtt_before: GttReading | None,
    may_hold_models: bool,
) -> ReleaseResult:
    """Wait (bounded by ``settings.timeout``) until ComfyUI is idle and, where GTT can be read, its memory
    is back. ``gtt_before`` is the reading taken before anything was asked of ComfyUI;
    ``may_hold_models`` False (nothing ran since it was last freed or started) skips the memory wait."""
    started = time.monotonic()
    deadline = started + settings.timeout

    def result(released: bool, how: str) -> ReleaseResult:
        return ReleaseResult(released, how, round(time.monotonic() - started, 4))

    delay = IDLE_POLL_FIRST
    while (why := await _busy(engine)) is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            return result(False, f"ComfyUI was not idle within {settings.timeout:g}s: {why}")
        await engine.wait_change(min(delay, left))
        delay = min(delay * IDLE_POLL_FACTOR, IDLE_POLL_MAX)

    if not may_hold_models:
        return result(True, "idle; it ran no prompt since it was last freed or started")
    now = engine.gtt()
    if gtt_before is None or now is None:
        return result(True, "idle (no amdgpu GTT reading: memory not observed)")
    target = gtt_before.used * (1.0 - settings.gtt_drop)
    low, low_at = now.used, time.monotonic()
    while True:
        if now.used <= target:
            return result(True, f"idle; GTT use fell from {_gib(gtt_before.used)} to {_gib(now.used)}")
        if now.used < low - GTT_NOISE_BYTES:
            low, low_at = now.used, time.monotonic()
        elif time.monotonic() - low_at >= settings.settle:
            return result(
                True,
                f"idle; GTT use stopped falling at {_gib(now.used)} (from {_gib(gtt_before.used)})",
            )
        left = deadline - time.monotonic()
        if left <= 0:
            return result(
                False,
                f"GTT use was still falling after {settings.timeout:g}s "
                f"({_gib(gtt_before.used)} -> {_gib(now.used)})",
            )
        await asyncio.sleep(min(GTT_POLL, left))
        reading = engine.gtt()
        if reading is None:
            return result(True, "idle; the GTT reading went away")
        now = reading

