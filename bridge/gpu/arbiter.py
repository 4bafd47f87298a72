"""The GPU arbiter: decides who holds GPU memory (LLM slots or ComfyUI) and performs the handover.

One switch at a time. Every switch — from REST, MQTT, an image request, idle-restore or crash
recovery — goes through :meth:`Arbiter._begin`, is persisted *before* anything is touched, is shown in
status ``switchover`` with its phases timed (drain, stop, start, ready) and announced as hub events
``switch_started`` / ``switch_finished`` / ``switch_failed``.

To generation: note the running LLM slots, persist, drain them (bounded, then go on), stop them,
make sure the img slot runs and ComfyUI answers. Any failure rolls back (the saved LLM slots start
again, mode stays inference) with the reason in ``switchover.error``.
To inference: (force: clear ComfyUI's queue and interrupt first) ``POST /free`` — ComfyUI stays up —
then start the saved LLM slots and clear the pin. If that fails the mode stays ``generation`` marked
incomplete, so a retry (manual, or the idle tick one window later) finishes the job.
Phases of a switch to inference: drain = cancelling renders (force only), stop = ComfyUI ``/free``,
start/ready = the LLM slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from ..config import Config
from ..errors import BUSY, NOT_GENERATION, PINNED, SWITCH_FAILED, SWITCH_IN_PROGRESS, ApiError
from ..status import Mode, Queue, StatusHub
from .demand import DemandRules, LlmWork, NoLlmWork
from .engine import EngineControl, EngineError
from .idle_restore import IdleRestore
from .release import ReleaseSettings, wait_released
from .slots.base import SlotError
from .slots.manager import SlotManager
from .slots.slot import Slot
from .state import ArbiterState, StateStore
from .supervisor import WATCH_INTERVAL, Supervisor
from .switch import Switch, SwitchFailed, other_mode

_LOG = logging.getLogger(__name__)
ACTIVITY_SAVE_INTERVAL = 30.0  # seconds between state writes caused by a busy ComfyUI queue
IDLE_RETRY = 60.0  # a failed idle-restore is tried again after at most this long


@dataclass(frozen=True, slots=True)
class CleanMark:
    """When ComfyUI was last known to hold no models, and its newest history entry then."""

    at: float  # monotonic
    newest: str | None


class Arbiter(DemandRules):
    """Owns ``mode``; the only code that starts and stops slots for a mode change."""

    def __init__(
        self,
        config: Config,
        hub: StatusHub,
        engine: EngineControl,
        slots: SlotManager,
        *,
        llm_work: LlmWork | None = None,
    ) -> None:
        self._config = config
        self._hub = hub
        self._engine = engine
        self._slots = slots
        self._store = StateStore(config.server.state_dir)
        self._state = ArbiterState()
        self._mode: Mode = "inference"
        self._switch: Switch | None = None
        self._last: Switch | None = None
        self._idle_failed = 0  # idle-restore switches that failed in a row, any cause (status: idle_restore_failures)
        self._active_images = 0
        self._activity_saved_at = 0.0
        self._idle_window = config.image.idle_restore_minutes * 60.0
        self._idle = IdleRestore(self, hub, self._idle_window, config.comfyui.probe_interval)
        self._release = ReleaseSettings.from_config(config.arbiter)
        self._clean: CleanMark | None = None  # unknown at start: ComfyUI may hold models
        self._supervisor = Supervisor(self, hub, slots, config.arbiter)
        self._idle_failures = 0  # idle-restore switches in a row that failed because of ComfyUI
        self._unreachable_since: float | None = None  # monotonic: ComfyUI silent while its slot runs
        self._llm_work: LlmWork = llm_work or NoLlmWork()
        self._changed = asyncio.Event()  # pulsed by every _publish: demand waits wake on it
        self._inference_due = 0  # LLM demands past residency, waiting for renders in flight to end

    # ------------------------------------------------------------------------------ properties

    @property
    def mode(self) -> Mode:
        """The mode held now; during a switch, the mode being left."""
        return self._mode

    @property
    def pinned(self) -> bool:
        return self._state.pinned

    @property
    def switching(self) -> bool:
        return self._switch is not None

    @property
    def state(self) -> ArbiterState:
        return self._state

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load state (missing/corrupt -> safe default), finish an interrupted switch, start the idle loop.

        Call after ``SlotManager.start()`` (which adopts slot processes left by a previous run).
        """
        first_start = not await asyncio.to_thread(self._store.path.exists)
        state, problem = await self._store.load()
        known = {s.name for s in self._slots.llm}
        # slots no saved state knows (a first start, a corrupt file, a slot added to the config since):
        # inference mode runs those marked autostart (by default every slot the bridge runs itself)
        if first_start or problem is not None:
            seen: set[str] = set()
        elif state.known_llm_slots is None:  # a file from before the field: every slot counts as known
            seen = known
        else:
            seen = set(state.known_llm_slots)
        new = sorted(s.name for s in self._slots.llm if s.name not in seen and s.cfg.autostart)
        if new:
            state = state.with_(saved_llm_slots=tuple(sorted({*state.saved_llm_slots, *new})))
        remember = state.known_llm_slots != tuple(sorted(known))
        if remember:
            state = state.with_(known_llm_slots=tuple(sorted(known)))
        dropped = [n for n in state.saved_llm_slots if n not in known]
        if dropped:
            _LOG.warning("arbiter state: forgetting unknown slots %s", ", ".join(dropped))
            state = state.with_(saved_llm_slots=tuple(n for n in state.saved_llm_slots if n in known))
        if state.since is None:  # anchor the idle window at this start
            state = state.with_(since=time.time())
        self._state = state
        if problem:
            _LOG.warning("arbiter state: %s; starting in inference mode", problem)
        if problem or remember or new:
            await self._save()
        self._mode = other_mode(state.switching_to) if state.switching_to else state.mode
        self._publish()
        if self._slots.img is not None:
            if state.switching_to is not None:
                _LOG.warning("arbiter: a switch to %s was interrupted; finishing it", state.switching_to)
                self._begin(state.switching_to, trigger="recovery", force=False, pin=None)
            elif reason := await self._out_of_step():
                _LOG.warning("arbiter: %s; restoring %s mode", reason, self._mode)
                self._begin(self._mode, trigger="recovery", force=False, pin=None)
        self._idle.start()
        self._supervisor.start(min(WATCH_INTERVAL, self._config.comfyui.probe_interval))

    async def _out_of_step(self) -> str | None:
        """Why the slots do not match the persisted mode (e.g. LLM units enabled at boot while the
        GPU belongs to ComfyUI, or the bridge's own slot processes gone after a restart), or None."""
        running = await self._slots.running_llm()
        if self._mode == "generation":
            if running:
                return f"LLM slots {', '.join(running)} run in generation mode"
            img = self._slots.img
            if img is not None and not await img.is_running():
                return "the img slot is not running in generation mode"
            return None
        missing = [n for n in self._state.saved_llm_slots if n not in running]
        return f"LLM slots {', '.join(missing)} are not running in inference mode" if missing else None

    async def stop(self) -> None:
        """Stop the idle loop and supervision; a switch in flight is cancelled and finished by the next start."""
        await self._idle.stop()
        await self._supervisor.stop()
        task = self._switch.task if self._switch else None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------------------ requests

    async def request_switch(
        self, target: Mode, *, force: bool = False, pin: bool | None = None, trigger: str = "api"
    ) -> tuple[int, dict[str, Any]]:
        """The checks of ``POST /api/comfyui/switchover`` after body validation, in DESIGN order."""
        noop = await self._precheck(target, pin)
        if noop is not None:
            return noop
        if target == "inference" and not force:
            queue = await self._queue_counts()
            noop = await self._precheck(target, pin)  # the world may have moved during the await
            if noop is not None:
                return noop
            if queue.running or queue.pending or self._active_images:
                raise ApiError(
                    BUSY,
                    "ComfyUI is busy; retry when the queue is empty or use force",
                    details={"running": queue.running, "pending": queue.pending, "requests": self._active_images},
                )
            if self._state.pinned:
                raise ApiError(PINNED, "generation mode is pinned; unpin it or use force")
        self._begin(target, trigger=trigger, force=force, pin=pin)
        return 202, {"status": "switching", "mode": target}

    async def _precheck(self, target: Mode, pin: bool | None) -> tuple[int, dict[str, Any]] | None:
        if self._switch is not None:
            raise ApiError(
                SWITCH_IN_PROGRESS,
                f"a switch to {self._switch.target} is in progress",
                details={"target": self._switch.target},
            )
        if self._settled_in(target):
            if pin is not None:
                await self.set_pin(pin)
            return 200, {"status": "noop", "mode": target}
        return None

    async def set_pin(self, pinned: bool) -> bool:
        """Hold (or release) generation mode against idle-restore; persisted.

        ``pinned: true`` only in generation mode and never during a switch (issue 10): outside it the pin
        would silently arm itself for some later switch, and a switch's rollback would drop it unseen.
        """
        if pinned and self._switch is not None:
            raise ApiError(
                SWITCH_IN_PROGRESS,
                f"a switch to {self._switch.target} is in progress; pin once it has finished",
                details={"target": self._switch.target},
            )
        if pinned and self._mode != "generation":
            raise ApiError(
                NOT_GENERATION,
                f"pin holds generation mode, and the GPU is in {self._mode} mode; "
                'switch with {"mode": "generation", "pin": true}',
                param="pinned",
                details={"mode": self._mode},
            )
        await self._persist(pinned=pinned)
        self._publish()
        return pinned

    async def ensure_generation(self, trigger: str = "image") -> None:
        """Make sure ComfyUI holds the GPU before a render; never hangs (slot timeouts bound it).

        Waits for a switch in flight and re-checks; starts a switch when needed. A failed switch to
        generation raises ``comfyui.switch_failed`` carrying that switch's error.
        """
        if self._slots.img is None:
            return
        started_own = False
        while True:
            sw = self._switch
            if sw is not None:
                await self._wait(sw)
                if sw.target == "generation" and sw.error:
                    raise ApiError(
                        SWITCH_FAILED, f"switch to generation failed: {sw.error}", details={"trigger": sw.trigger}
                    )
                continue
            if self._generation_ready() and not self._inference_due:
                return
            if started_own:
                raise ApiError(SWITCH_FAILED, "ComfyUI is not ready after the switch to generation")
            if await self._hold_for_demand("generation"):
                continue
            self._begin("generation", trigger=trigger, force=False, pin=None)
            started_own = True

    def image_activity(self) -> AbstractAsyncContextManager[None]:
        """Wrap each render: idle-restore never fires while one runs; the end is recorded (persisted)."""
        return self._image_activity()

    @contextlib.asynccontextmanager
    async def _image_activity(self) -> AsyncIterator[None]:
        self._active_images += 1
        self._publish()
        try:
            yield
        finally:
            self._active_images -= 1
            try:
                await self._persist(last_image_activity=time.time())
            except OSError as err:
                _LOG.warning("arbiter state not saved: %s", err)
            self._publish()

    # ------------------------------------------------------------------------------ switching

    def _settled_in(self, target: Mode) -> bool:
        """In ``target`` with nothing left to do: for inference that includes every saved LLM slot being
        ready, so a switch to inference while one is dead is a retry, not a "noop"."""
        if self._mode != target or self._state.incomplete:
            return False
        return target != "inference" or not self._saved_down()

    def _saved_down(self) -> list[str]:
        return [s.name for s in self._slots.llm if s.name in self._state.saved_llm_slots and s.state != "ready"]

    def _dead_saved(self) -> set[str]:
        """Saved LLM slots that died by themselves (or failed to start): they stay saved, they should run."""
        dead = self._supervisor.dead
        return {s.name for s in self._slots.llm if s.name in self._state.saved_llm_slots and (s.name in dead or s.state == "error")}

    # ------------------------------------------------------------------------------ supervision

    def should_run(self, slot: Slot) -> bool:
        """Supervision's question: restart this slot now that it died? Never during a switch."""
        if self._switch is not None:
            return False
        if slot.group == "img":  # ComfyUI stays resident in both modes
            return True
        return self._settled_in_mode("inference") and slot.name in self._state.saved_llm_slots

    def _settled_in_mode(self, target: Mode) -> bool:
        return self._mode == target and not self._state.incomplete

    def watch(self) -> None:
        """A ComfyUI that stays unreachable while its slot runs (wedged, e.g. a ROCm hang) for
        ``hung_unreachable_minutes`` in unpinned generation mode: restart it and go back to inference."""
        limit = self._config.arbiter.hung_unreachable_minutes * 60.0
        img = self._slots.img
        applies = (
            limit > 0 and img is not None and img.container == "running" and self._mode == "generation"
            and self._switch is None and not self._state.pinned and not self._active_images
        )  # fmt: skip
        if not applies or self._hub.status.reachable:
            self._unreachable_since = None
            return
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        elif now - self._unreachable_since >= limit:
            self._unreachable_since = None
            reason = f"ComfyUI did not answer for {limit / 60:g} min while its slot ran"
            _LOG.warning("arbiter: %s; restarting it and restoring inference", reason)
            self._begin("inference", trigger="hung", force=True, pin=None, restart_img=reason)

    def _generation_ready(self) -> bool:
        img = self._slots.img
        return self._settled_in("generation") and (img is None or img.state == "ready")

    async def _queue_counts(self) -> Queue:
        """A fresh queue reading; an unreachable ComfyUI has nothing to lose, so it counts as empty."""
        try:
            return await self._engine.queue_counts()
        except EngineError as err:
            _LOG.info("queue check: %s (treated as empty)", err)
            return Queue()

    async def _wait(self, sw: Switch) -> None:
        assert sw.task is not None
        await asyncio.shield(sw.task)

    def _begin(
        self, target: Mode, *, trigger: str, force: bool, pin: bool | None, restart_img: str | None = None
    ) -> Switch:
        """Start a switch. Synchronous on purpose: check-and-set of ``_switch`` cannot interleave."""
        assert self._switch is None, "one switch at a time"
        sw = Switch(target=target, trigger=trigger, force=force, pin=pin, restart_img=restart_img)
        self._switch = sw
        self._hub.update(switchover=sw.view())
        self._hub.emit("switch_started", target=target, trigger=trigger, mode=self._mode)
        self._publish()
        sw.task = asyncio.create_task(self._run(sw), name=f"switch-{target}")
        return sw

    async def _run(self, sw: Switch) -> None:
        try:
            await self._supervisor.pause()  # the switch owns the slots until it ends
            if sw.target == "generation":
                await self._to_generation(sw)
            else:
                await self._to_inference(sw)
        except SwitchFailed:
            pass
        except OSError as err:  # the state could not be persisted: nothing was touched after that
            sw.error = f"cannot save arbiter state: {err}"
        except asyncio.CancelledError:
            sw.error = "cancelled (bridge stopping); finished on next start"
            raise
        except Exception as err:  # a bug must not leave the arbiter wedged in "switching"
            _LOG.exception("switch to %s crashed", sw.target)
            sw.error = f"internal error: {err}"
        finally:
            sw.finished_at = time.time()
            self._switch = None
            self._last = sw
            if sw.target == "inference":
                if not sw.error:  # back in inference, however it got there
                    self._idle_failures = self._idle_failed = 0
                elif sw.trigger == "idle":
                    self._idle_failed += 1
                    self._idle_failures += int(sw.comfy_fault)
            self._supervisor.resume()
            self._hub.update(switchover=sw.view(), idle_restore_failures=self._idle_failed)
            event = "switch_failed" if sw.error else "switch_finished"
            self._hub.emit(
                event,
                target=sw.target,
                trigger=sw.trigger,
                phases=dict(sw.phases),
                error=sw.error,
                warnings=list(sw.warnings),
                mode=self._mode,
            )
            if sw.error:
                _LOG.warning("switch to %s (%s) failed: %s", sw.target, sw.trigger, sw.error)
            self._publish()

    def _phase(self, sw: Switch, name: str, since: float) -> None:
        sw.phases[name] = round(time.monotonic() - since, 4)
        self._hub.update(switchover=sw.view())

    def _fail(self, sw: Switch, message: str) -> SwitchFailed:
        sw.error = message if sw.error is None else f"{sw.error}; {message}"
        return SwitchFailed(message)

    async def _to_generation(self, sw: Switch) -> None:
        running = await self._slots.running_llm()
        settled_inference = self._state.mode == "inference" and not self._state.incomplete and not self._state.switching_to
        kept = set(self._state.saved_llm_slots) if not settled_inference else self._dead_saved()
        saved = tuple(sorted(set(running) | kept))  # a slot that died is not dropped: it should run
        pinned = sw.pin if sw.pin is not None else self._state.pinned
        await self._persist(
            mode="generation", switching_to="generation", switch_trigger=sw.trigger, saved_llm_slots=saved, pinned=pinned
        )
        self._publish()
        victims = [s for s in self._slots.llm if s.name in running]

        t = time.monotonic()
        drained = await asyncio.gather(*(self._drain(s) for s in victims))
        for slot, result in zip(victims, drained, strict=True):
            if result.blind is not None:
                sw.warnings.append(
                    f"{slot.name}: cannot see its work in flight ({result.blind}); "
                    f"waited the whole {slot.cfg.drain_timeout:g}s drain, then stopped it"
                )
            elif not result.idle:
                sw.warnings.append(f"{slot.name}: still busy after {slot.cfg.drain_timeout:g}s drain; stopped anyway")
        self._phase(sw, "drain", t)

        t = time.monotonic()
        errors = [e for e in await self._gather(s.stop() for s in victims) if e is not None]
        self._phase(sw, "stop", t)
        if errors:
            await self._rollback(sw, saved, f"LLM slot will not stop: {errors[0]}", img_started=False)

        img = self._slots.img
        assert img is not None
        img_was_running = await img.is_running()
        t = time.monotonic()
        try:
            await img.launch()
        except SlotError as err:
            self._phase(sw, "start", t)
            await self._rollback(sw, saved, f"img slot did not start: {err}", img_started=False)
        self._phase(sw, "start", t)
        t = time.monotonic()
        try:
            await img.wait_until_ready()
        except SlotError as err:
            self._phase(sw, "ready", t)
            await self._rollback(sw, saved, f"ComfyUI not ready: {err}", img_started=not img_was_running)
        self._phase(sw, "ready", t)
        if not img_was_running:  # a fresh ComfyUI holds no models
            await self._mark_clean()

        await self._persist(switching_to=None, incomplete=False, since=time.time())
        self._mode = "generation"

    async def _rollback(self, sw: Switch, saved: tuple[str, ...], reason: str, *, img_started: bool) -> None:
        """Undo a failed switch to generation: the saved LLM slots run again, mode stays inference."""
        self._fail(sw, reason)
        img = self._slots.img
        if img_started and img is not None:  # we started it and it is broken: leave things as found
            with contextlib.suppress(SlotError):
                await img.stop()
        slots = [s for s in self._slots.llm if s.name in saved]
        problems = await self._start_all(slots)
        if problems:
            sw.error = f"{sw.error}; rollback: {'; '.join(problems)}"
        await self._persist(
            mode="inference", switching_to=None, pinned=False, incomplete=bool(problems), since=time.time()
        )
        self._mode = "inference"
        raise SwitchFailed(reason)

    async def _to_inference(self, sw: Switch) -> None:
        await self._persist(mode="inference", switching_to="inference", switch_trigger=sw.trigger)
        img = self._slots.img
        img_running = img is not None and await img.is_running()
        gtt_before = self._engine.gtt()  # before anything is asked of ComfyUI: the release compares with it

        t = time.monotonic()
        if sw.force and sw.restart_img is None:
            try:
                await self._engine.cancel_all()
            except EngineError as err:
                sw.warnings.append(str(err))
        self._phase(sw, "drain", t)

        t = time.monotonic()
        if img_running and sw.restart_img is None:
            try:
                await self._engine.free()
            except EngineError as err:
                if not sw.force:
                    self._phase(sw, "stop", t)
                    await self._persist(mode="generation", switching_to=None)
                    sw.comfy_fault = True
                    raise self._fail(sw, str(err)) from err
                sw.warnings.append(f"{err} (forced: going on)")
        self._phase(sw, "stop", t)

        relaunch: Awaitable[None] | None = None
        if img_running:
            t = time.monotonic()
            if sw.restart_img is not None:
                relaunch = await self._restart_img(sw, sw.restart_img)
            else:
                released = await wait_released(
                    self._engine, self._release, gtt_before=gtt_before, may_hold_models=await self._may_hold_models()
                )
                _LOG.info("release: %s (%.3fs)", released.how, released.waited)
                if released.released:
                    await self._mark_clean()
                else:
                    relaunch = await self._restart_img(sw, released.how)
            self._phase(sw, "release", t)

        slots = [s for s in self._slots.llm if s.name in self._state.saved_llm_slots]
        if relaunch is None:
            problems = await self._start_all(slots, sw)
        else:  # ComfyUI comes back (without models) while the LLM slots start
            problems, _ = await asyncio.gather(self._start_all(slots, sw), relaunch)
        if problems:
            # ComfyUI's models are already freed, but the LLM side is not complete: keep "generation"
            # (incomplete) so a retry — manual or the idle tick one window later — finishes the job.
            await self._persist(mode="generation", switching_to=None, incomplete=True, since=time.time())
            self._mode = "generation"
            raise self._fail(sw, "LLM slot did not start: " + "; ".join(problems))
        await self._persist(switching_to=None, pinned=False, incomplete=False, since=time.time())
        self._mode = "inference"

    async def _restart_img(self, sw: Switch, reason: str) -> Awaitable[None]:
        """Stop the img slot — that frees its GPU memory for sure — and return the relaunch to await.

        A slot that will not even stop may still hold the GPU: the switch fails and the mode stays
        generation (like a failing ``/free``).
        """
        img = self._slots.img
        assert img is not None
        self._clean = None
        try:
            await img.stop()
        except SlotError as err:
            await self._persist(mode="generation", switching_to=None)
            sw.comfy_fault = True
            raise self._fail(sw, f"{reason}; the img slot would not stop either: {err}") from err
        sw.warnings.append(f"{reason}; img slot {img.name} restarted")
        _LOG.warning("switch to inference: %s; img slot %s restarted", reason, img.name)
        self._hub.emit("img_slot_restarted", slot=img.name, reason=reason, trigger=sw.trigger)
        return self._relaunch_img(sw)

    async def _relaunch_img(self, sw: Switch) -> None:
        img = self._slots.img
        assert img is not None
        try:
            await img.start()
        except SlotError as err:  # the GPU is free either way; ComfyUI's UI is what is missing
            sw.warnings.append(f"img slot {img.name} did not come back: {err}")
            return
        await self._mark_clean()

    async def _mark_clean(self) -> None:
        """ComfyUI holds no models now (released, or freshly started): remember its newest history entry,
        so the next release can tell whether anything ran (and loaded models) since."""
        try:
            newest = await self._engine.newest_prompt()
        except EngineError:
            self._clean = None
            return
        self._clean = CleanMark(time.monotonic(), newest)

    async def _may_hold_models(self) -> bool:
        """False only when ComfyUI provably ran nothing since it was last clean: its newest history entry
        is unchanged and the websocket saw no prompt since (two observations, either one suffices)."""
        mark = self._clean
        if mark is None or self._engine.busy_since(mark.at):
            return True
        try:
            return await self._engine.newest_prompt() != mark.newest
        except EngineError:
            return True

    async def _start_all(self, slots: list[Slot], sw: Switch | None = None) -> list[str]:
        """Launch then await readiness of all ``slots`` in parallel; the problems, one per failed slot."""
        t = time.monotonic()
        launched = await self._gather(s.launch() for s in slots)
        if sw is not None:
            self._phase(sw, "start", t)
        t = time.monotonic()
        started = [s for s, res in zip(slots, launched, strict=True) if res is None]
        ready = await self._gather(s.wait_until_ready() for s in started)
        if sw is not None:
            self._phase(sw, "ready", t)
        return [str(r) for r in (*launched, *ready) if r is not None]

    @staticmethod
    async def _gather(aws: Any) -> list[SlotError | None]:
        """Run slot operations in parallel: None per success, the SlotError per failure (others raise)."""
        results = await asyncio.gather(*aws, return_exceptions=True)
        for res in results:
            if isinstance(res, BaseException) and not isinstance(res, SlotError):
                raise res
        return [res if isinstance(res, SlotError) else None for res in results]

    # ------------------------------------------------------------------------------ idle-restore

    def idle_anchor(self) -> float | None:
        """When image work was last seen, or None while idle-restore does not apply (inference mode,
        pinned, a switch in flight, a render through the bridge)."""
        if self._mode != "generation" or self._state.pinned or self._switch is not None or self._active_images:
            return None
        last = self._last
        finished = last.finished_at if last is not None else None
        if finished is not None and last is not None and last.trigger in ("idle", "hung") and last.error:
            # a failed attempt is retried soon (a window of at most IDLE_RETRY), not a whole window later
            finished -= self._idle_window - min(self._idle_window, IDLE_RETRY)
        marks = [self._state.last_image_activity, self._state.since, finished]
        return max((m for m in marks if m is not None), default=time.time())

    async def fresh_queue(self) -> Queue:
        return await self._queue_counts()

    async def note_queue_activity(self) -> None:
        """A busy ComfyUI queue restarts the idle window at every tick, but goes to disk at most every
        ``ACTIVITY_SAVE_INTERVAL`` seconds: a restart anchors the window at its own start anyway."""
        now = time.time()
        self._state = self._state.with_(last_image_activity=now)
        if now - self._activity_saved_at >= ACTIVITY_SAVE_INTERVAL:
            self._activity_saved_at = now
            await self._save()

    def restore_inference(self) -> None:
        """Idle-restore fires. After ``hung_idle_attempts`` failed in a row because ComfyUI did not do its
        part, this attempt restarts the img slot instead of asking it again."""
        attempts = self._config.arbiter.hung_idle_attempts
        if attempts and self._idle_failures >= attempts:
            last = self._last.error if self._last is not None else None
            reason = f"{self._idle_failures} idle-restore attempts in a row failed (last: {last})"
            _LOG.warning("arbiter: %s; restarting the img slot", reason)
            self._begin("inference", trigger="hung", force=True, pin=None, restart_img=reason)
            return
        self._begin("inference", trigger="idle", force=False, pin=None)

    # ------------------------------------------------------------------------------ state

    async def _persist(self, **changes: Any) -> None:
        self._state = self._state.with_(**changes)
        await self._save()

    async def _save(self) -> None:
        await self._store.save(self._state)

    def _publish(self) -> None:
        self._hub.update(mode=self._mode, pinned=self._state.pinned, idle_restore_at=self._idle.deadline())
        self._idle.wake()
        self._changed.set()
        self._changed = asyncio.Event()
