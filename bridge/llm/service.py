"""The LLM pipeline, top to bottom: call -> route -> GPU admission -> slot -> the slot's answer.

Admission is where the GPU comes in. A call goes straight to its slot when inference mode is settled,
the slot is ready and nobody for that slot waits before it (no overtaking). Otherwise it waits in the
slot's FIFO (:mod:`.demand`), bounded by ``llm.wait_timeout``; the head of the queue does the asking:

- generation mode (or a switch to it): pinned, or ``llm.auto_switch = false`` -> 503 ``gpu.image_mode``
  at once; else :meth:`LlmGate.ensure_inference` switches (trigger ``llm``) after the mode's residency
  and the renders in flight, and every waiter waits for that one switch;
- inference, the slot starting: wait until it is ready; the slot stopped or broken: 502
  ``llm.upstream_failed`` naming its state (nothing would answer);
- when the slot can take work, all its waiters are admitted at once, in arrival order.

A failed switch, or a refusal the whole GPU shares (pinned), answers every waiter at once rather than
letting each one start its own switch. An admitted call counts as in flight on its slot until its
answer has been passed on, which is what the arbiter's drain waits for. A connection the slot refuses
(it died between two state polls) is tried once more after re-reading the slot's state. Answers carry
``X-Hal0-Slot``, ``X-Hal0-Wait`` (seconds the call waited for the GPU) and ``X-Hal0-Admission`` (the
call's number in the order calls were let through to slots, which shows the FIFO at work).
Events: ``llm_queued`` when a call starts waiting, ``llm_switch_wait`` when it stops (with ``wait_s``
and the outcome). Status ``llm`` is published at most every ``STATUS_INTERVAL``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from .. import errors
from ..config import LlmConfig
from ..errors import ApiError
from ..gpu.demand import LlmGate
from ..gpu.slots.slot import Slot
from ..status import LlmStatus, StatusHub
from .call import LlmCall
from .demand import Demand, Waiter
from .models import ModelDirectory
from .proxy import Reply, Upstream, UpstreamUnreachable
from .router import route

_LOG = logging.getLogger(__name__)
STATUS_INTERVAL = 0.05  # seconds: request counts change per request; status follows at most this often
SLOT_POLL = 0.05  # seconds between looks at a starting slot's state
SLOT_DOWN = ("offline", "error")


class LlmService:
    def __init__(
        self,
        config: LlmConfig,
        hub: StatusHub,
        slots: list[Slot],
        gate: LlmGate | None,
        demand: Demand,
        directory: ModelDirectory,
        upstream: Upstream,
    ) -> None:
        self._config = config
        self._hub = hub
        self._slots = {s.name: s for s in slots}
        self._gate = gate
        self._demand = demand
        self._directory = directory
        self._upstream = upstream
        self._publish_handle: asyncio.TimerHandle | None = None
        demand.on_change = directory.on_change = self._changed

    @property
    def max_body_bytes(self) -> int:
        return self._config.max_body_bytes

    async def start(self) -> None:
        await self._upstream.start()
        await self._directory.start(self._hub)
        self._publish()

    async def stop(self) -> None:
        if self._publish_handle is not None:
            self._publish_handle.cancel()
            self._publish_handle = None
        await self._directory.stop()
        await self._upstream.close()

    def models(self) -> list[dict[str, Any]]:
        """The LLM entries of ``GET /v1/models``."""
        return [m.listing() for m in self._directory.all()]

    # ------------------------------------------------------------------------------ a call

    @asynccontextmanager
    async def open(self, call: LlmCall, client_headers: Mapping[str, str]) -> AsyncIterator[Reply]:
        """Route, admit and send ``call``; yields the slot's answer while it counts as in flight."""
        name = route(self._directory, call.model)
        slot = self._slots[name]
        deadline = asyncio.get_running_loop().time() + self._config.wait_timeout
        arrived = time.monotonic()
        for attempt in range(2):
            admission = await self._admit(slot, call, deadline)
            waited = time.monotonic() - arrived
            try:
                async with self._upstream.call(name, slot.url, call, client_headers, slot.cfg.headers) as reply:
                    reply.headers["X-Hal0-Admission"] = str(admission)
                    reply.headers["X-Hal0-Wait"] = f"{waited:.4f}"
                    yield reply
                    return
            except UpstreamUnreachable as err:
                if attempt:
                    raise ApiError(
                        errors.LLM_UPSTREAM_FAILED, f"LLM slot {name} cannot be reached: {err}", details={"slot": name}
                    ) from err
                _LOG.info("LLM slot %s: no answer on the connection (%s); trying once more", name, err)
                await slot.refresh()
            finally:
                self._demand.end(name)

    async def _admit(self, slot: Slot, call: LlmCall, deadline: float) -> int:
        """Count ``call`` in flight on ``slot`` once it may go there (waiting in the FIFO until then);
        the admission's number."""
        if not self._demand.has_waiters(slot.name) and self._can_start(slot):
            return self._demand.begin(slot.name)
        if self._gate is not None:
            self._gate.check_inference(self._config.auto_switch)
            if self._gate.llm_ready() and slot.state in SLOT_DOWN:
                raise self._slot_down(slot)
        waiter = self._demand.join(slot.name)
        self._hub.emit(
            "llm_queued", slot=slot.name, model=call.model, request=waiter.seq, request_id=call.request_id,
            position=self._demand.position(waiter), queued=self._demand.queued, mode=self._hub.status.mode,
        )  # fmt: skip
        outcome = "admitted"
        try:
            async with asyncio.timeout_at(deadline):
                await self._wait_turn(slot, waiter)
        except BaseException as exc:
            if waiter.admitted:  # let in at the last moment, but not going on: not in flight after all
                self._demand.end(slot.name)
            if isinstance(exc, TimeoutError):
                outcome = errors.LLM_WAIT_TIMEOUT.code
                raise ApiError(
                    errors.LLM_WAIT_TIMEOUT,
                    f"no LLM slot took the request within llm.wait_timeout ({self._config.wait_timeout:g} s)",
                    details={"slot": slot.name, "mode": self._hub.status.mode},
                ) from None
            outcome = exc.code if isinstance(exc, ApiError) else type(exc).__name__
            raise
        else:
            return waiter.ordinal
        finally:
            self._demand.leave(waiter)
            self._hub.emit(
                "llm_switch_wait", slot=slot.name, model=call.model, request=waiter.seq, request_id=call.request_id,
                outcome=outcome,
                wait_s=round(time.monotonic() - waiter.since, 4),
            )  # fmt: skip

    async def _wait_turn(self, slot: Slot, waiter: Waiter) -> None:
        while not waiter.admitted:
            if waiter.error is not None:
                raise waiter.error
            if not self._demand.is_head(waiter):
                await waiter.wake.wait()
                waiter.wake.clear()
                continue
            if self._can_start(slot):
                self._demand.admit_all(slot.name)
                return
            try:
                await self._make_ready(slot)
            except ApiError as err:
                # a refusal or a failed switch is everyone's answer; a dead slot only its own queue's
                self._demand.fail(err, slot.name if err.code == errors.LLM_UPSTREAM_FAILED.code else None)
                raise

    async def _make_ready(self, slot: Slot) -> None:
        """One step towards ``slot`` taking work: get the GPU to inference, or wait for the slot."""
        if self._gate is not None and not self._gate.llm_ready():
            await self._gate.ensure_inference("llm", may_switch=self._config.auto_switch)
            return
        if slot.state in SLOT_DOWN:
            raise self._slot_down(slot)
        await asyncio.sleep(SLOT_POLL)

    def _can_start(self, slot: Slot) -> bool:
        return (self._gate is None or self._gate.llm_ready()) and slot.state == "ready"

    @staticmethod
    def _slot_down(slot: Slot) -> ApiError:
        return ApiError(
            errors.LLM_UPSTREAM_FAILED,
            f"LLM slot {slot.name} is {slot.state} in inference mode{f': {slot.error}' if slot.error else ''}",
            details={"slot": slot.name, "state": slot.state},
        )

    # ------------------------------------------------------------------------------ status

    def _changed(self) -> None:
        if self._publish_handle is None:
            self._publish_handle = asyncio.get_running_loop().call_later(STATUS_INTERVAL, self._publish)

    def _publish(self) -> None:
        self._publish_handle = None
        self._hub.update(
            llm=LlmStatus(
                in_flight=self._demand.total_in_flight, queued=self._demand.queued, models=self._directory.ids()
            )
        )
