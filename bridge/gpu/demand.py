"""The GPU side of LLM demand (issue 12): the views between the arbiter and the LLM proxy, and the
arbiter's demand rules.

:class:`LlmGate` is what the LLM proxy needs from whoever owns the GPU (the mirror of
:class:`~hal0_bridge.gpu.gate.GpuGate` for images): "may a request go to its slot now?", "refuse at
once when demand may not move the GPU", and "get the GPU to inference, waiting for a switch in
flight or starting one".

:class:`LlmWork` is what the arbiter needs from the LLM proxy: how many proxied requests a slot is
answering, and a bounded wait until it answers none. The proxy counts its own requests, so the drain
of a switch to generation is exact for everything that goes through the bridge; ``GET /slots`` still
covers clients that talk to a slot directly. Without an LLM proxy the arbiter uses
:class:`NoLlmWork`.

:class:`DemandRules` is mixed into the arbiter: the LLM gate's methods, the residency rule
(``arbiter.min_mode_seconds``) and the drain that reads :class:`LlmWork`. It lives here so the arbiter's
state machine stays one module and this concern another; it only reads the arbiter's state and starts
switches through the arbiter's own ``_begin``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Protocol

from ..errors import IMAGE_MODE, SWITCH_FAILED, ApiError
from ..status import Mode
from .slots.slot import Drained
from .switch import Switch, other_mode

if TYPE_CHECKING:
    from ..config import Config
    from ..status import StatusHub
    from .slots.manager import SlotManager
    from .slots.slot import Slot
    from .state import ArbiterState

DEMAND_POLL = 0.1  # seconds between looks at ComfyUI's queue while an LLM demand waits for renders to end


class LlmGate(Protocol):
    def llm_ready(self) -> bool: ...  # inference is settled and no switch is in flight

    def check_inference(self, may_switch: bool) -> None: ...  # raises gpu.image_mode (503)

    async def ensure_inference(self, trigger: str = "llm", *, may_switch: bool = True) -> None: ...


class LlmWork(Protocol):
    def in_flight(self, slot: str) -> int: ...

    async def wait_idle(self, slot: str, timeout: float) -> bool: ...  # False: still busy at the end


class NoLlmWork:
    """No LLM proxy: nothing is in flight through the bridge."""

    def in_flight(self, slot: str) -> int:
        return 0

    async def wait_idle(self, slot: str, timeout: float) -> bool:
        return True


class _DemandHost(Protocol):
    """The arbiter's state the demand rules read (all of it owned and written by the arbiter)."""

    _config: Config
    _hub: StatusHub
    _slots: SlotManager
    _state: ArbiterState
    _mode: Mode
    _switch: Switch | None
    _last: Switch | None
    _active_images: int
    _llm_work: LlmWork
    _changed: asyncio.Event  # pulsed by every arbiter publish
    _inference_due: int  # LLM demands past residency, waiting for renders in flight to end

    def _settled_in(self, target: Mode) -> bool: ...

    async def _wait(self, sw: Switch) -> None: ...

    def _begin(self, target: Mode, *, trigger: str, force: bool, pin: bool | None) -> Switch: ...

    def check_inference(self, may_switch: bool) -> None: ...

    async def _hold_for_demand(self, target: Mode) -> bool: ...

    def _residency_left(self) -> float: ...

    async def _wait_change(self, timeout: float) -> None: ...


class DemandRules:
    """The arbiter's rules for demand (image and LLM requests); see the module docstring."""

    def llm_ready(self: _DemandHost) -> bool:
        """An LLM request may go to its slot now: inference is settled and no switch is in flight."""
        return self._switch is None and self._settled_in("inference")

    def check_inference(self: _DemandHost, may_switch: bool) -> None:
        """Refuse at once (503 ``gpu.image_mode``) when the GPU is in, or heading to, generation mode
        and demand may not move it: generation is pinned, or ``may_switch`` is off (llm.auto_switch)."""
        heading = self._switch.target if self._switch is not None else self._mode
        if heading != "generation":
            return
        if self._state.pinned:
            raise ApiError(IMAGE_MODE, "the GPU is pinned to image generation; unpin it to use the LLMs",
                           details={"pinned": True, "auto_switch": may_switch})  # fmt: skip
        if not may_switch:
            raise ApiError(IMAGE_MODE, "the GPU is in image generation mode and llm.auto_switch is off",
                           details={"pinned": False, "auto_switch": False})  # fmt: skip

    async def ensure_inference(self: _DemandHost, trigger: str = "llm", *, may_switch: bool = True) -> None:
        """Mirror of :meth:`ensure_generation` for LLM requests; the caller bounds the wait.

        Waits for a switch in flight and re-checks. In generation mode: refused when pinned or when
        ``may_switch`` is off; else waits out the residency and the renders in flight
        (:meth:`_hold_for_demand`) and switches (trigger ``llm``). A failed own switch raises
        ``comfyui.switch_failed`` with that switch's error.
        """
        if self._slots.img is None:
            return
        started_own = False
        while True:
            sw = self._switch
            if sw is not None:
                await self._wait(sw)
                if started_own and sw.error:
                    raise ApiError(
                        SWITCH_FAILED, f"switch to inference failed: {sw.error}", details={"trigger": sw.trigger}
                    )
                continue
            if self._settled_in("inference"):
                return
            self.check_inference(may_switch)
            if started_own:
                raise ApiError(SWITCH_FAILED, "the LLM slots are not ready after the switch to inference")
            if await self._hold_for_demand("inference"):
                continue
            self._begin("inference", trigger=trigger, force=False, pin=None)
            started_own = True

    async def _hold_for_demand(self: _DemandHost, target: Mode) -> bool:
        """Before demand (an image or an LLM request) moves the GPU to ``target``: True when it had
        to wait (the caller looks again), False when the switch may start now.

        No thrash: a settled mode is held ``arbiter.min_mode_seconds`` against demand (manual switches
        and idle-restore are not demand). To inference, renders in flight (through the bridge, or in
        ComfyUI's own queue) finish first, and while such an LLM demand waits, new image requests wait
        too, so neither kind starves the other. To generation, LLM requests in flight are the drain's
        business, inside the switch.
        """
        if target == "generation" and self._inference_due and self._settled_in("generation"):
            await self._wait_change(DEMAND_POLL)
            return True
        if not self._settled_in(other_mode(target)):
            return False  # e.g. generation left incomplete by a failed switch: nothing to hold
        left = self._residency_left()
        if left > 0:
            await self._wait_change(left)
            return True
        queue = self._hub.status.queue
        if target == "inference" and (self._active_images or queue.running or queue.pending):
            self._inference_due += 1
            try:
                await self._wait_change(DEMAND_POLL)
            finally:
                self._inference_due -= 1
            return True
        return False

    def _residency_left(self: _DemandHost) -> float:
        """Seconds the mode is still held against demand: ``min_mode_seconds`` from the end of the last
        switch this arbiter ran (a failed one held nothing; the recovery at start-up does not count, so
        a freshly started bridge serves the first request of either kind at once)."""
        last = self._last
        if last is None or last.error or last.finished_at is None or last.trigger == "recovery":
            return 0.0
        return last.finished_at + self._config.arbiter.min_mode_seconds - time.time()

    async def _wait_change(self: _DemandHost, timeout: float) -> None:
        """Sleep up to ``timeout``, waking early when the arbiter publishes a change."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _drain(self: _DemandHost, slot: Slot) -> Drained:
        """Bounded by the slot's ``drain_timeout``: first the requests the LLM proxy has in flight on
        it (counted exactly), then what the slot itself reports (``GET /slots``, for direct clients;
        a slot that cannot be seen is waited out for the time left)."""
        deadline = time.monotonic() + slot.cfg.drain_timeout
        if not await self._llm_work.wait_idle(slot.name, slot.cfg.drain_timeout):
            return Drained(False)
        return await slot.drain(max(0.0, deadline - time.monotonic()))

