"""The one persistent ComfyUI websocket, and following prompts to their end.

ComfyUI sends a prompt's messages only to the socket whose ``clientId`` submitted it, so the daemon
keeps exactly one socket open for its whole life (reconnecting with backoff) and dispatches by
``prompt_id``. The websocket is the fast path; ``GET /history/<id>`` is the safety net: when the socket
is down, or says nothing about a prompt for ``ws_silence_timeout``, :meth:`ComfyWebsocket.wait` polls
history (and the queue, to notice a prompt ComfyUI has forgotten) every ``history_poll_interval``.

Messages may arrive before anyone waits (``POST /prompt`` returns after the prompt is queued and the
worker may already run it), so every prompt seen gets a tracker that buffers its outcome; a bounded
number of finished ones are kept for a late :meth:`wait`.

Which outcome is true (issue 10): success needs ``execution_success`` (with the images its ``executed``
messages named) or a history entry whose ``status_str`` is ``success``. ``executing {node: null}`` alone
is only ComfyUI's "this prompt is over" (main.py ``prompt_worker`` sends it after ``task_done`` wrote the
history entry), so it sends us to ``/history``. A prompt that was open while the socket was down (or was
submitted while it was down) may have lost any message, so for it the socket's word is only a hint and
``/history`` decides; a history answer always wins over the socket's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import aiohttp

from ..config import ComfyConfig
from ..status import Progress
from .client import ComfyUIClient, RunResult, images_from_outputs
from .errors import (
    ComfyExecutionFailed,
    ComfyInterrupted,
    ComfyLost,
    ComfyRenderTimeout,
    ComfyUIError,
    ComfyUnreachable,
)
from .history import result_from_history
from .previews import FEATURE_FLAGS, parse_frame
from .tracker import Tracker

_LOGGER = logging.getLogger(__name__)

# trackers nobody waits for (prompts of ours whose waiter went away, finished ones kept for a late
# wait()) are dropped oldest-first beyond this many
MAX_TRACKED = 128
# first reconnect delay; it doubles up to the probe interval (no faster than the engine monitor probes)
RECONNECT_FIRST_DELAY = 0.05
# a prompt neither queued nor in history on this many consecutive polls is gone (restart, deleted)
LOST_AFTER_POLLS = 2

# messages that ComfyUI sends only to the submitting client: these open a tracker for an unknown id
_CLIENT_MESSAGES = frozenset(
    {
        "execution_start",
        "execution_cached",
        "executing",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
    }
)

QueueCallback = Callable[[int], None]
ProgressCallback = Callable[[Progress | None], None]
ConnectionCallback = Callable[[bool], None]
ActiveCallback = Callable[[str | None], None]


class ComfyWebsocket:
    """Keeps ``/ws?clientId=<client_id>`` open and turns its messages into per-prompt outcomes and
    monitor callbacks (queue length, progress, connection state, active prompt)."""

    def __init__(self, client: ComfyUIClient, cfg: ComfyConfig) -> None:
        self._cfg = cfg
        self._client = client
        self._trackers: OrderedDict[str, Tracker] = OrderedDict()
        self._done_ids: OrderedDict[str, None] = OrderedDict()  # waited for and done: ignore late messages
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = False
        self._wake = asyncio.Event()  # cut a reconnect backoff short
        self.active_prompt: str | None = None  # our prompt that ComfyUI is executing right now
        # monotonic time a prompt (anyone's) was last seen queued or running on this socket
        self.last_busy: float | None = None
        self.queue_remaining: int | None = None
        self.progress: Progress | None = None
        self.on_queue: list[QueueCallback] = []
        self.on_progress: list[ProgressCallback] = []
        self.on_connection: list[ConnectionCallback] = []
        self.on_active: list[ActiveCallback] = []

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def url(self) -> str:
        return f"{self._cfg.url}/ws?clientId={self._client.client_id}"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="comfyui-ws")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for tracker in self._trackers.values():
            if tracker.outcome is None:
                tracker.outcome = ComfyUnreachable("the bridge is shutting down", prompt_id=tracker.prompt_id)
                tracker.changed.set()

    def reconnect_now(self) -> None:
        """Skip the rest of a reconnect backoff (the monitor saw ComfyUI answer again)."""
        self._wake.set()

    async def _run(self) -> None:
        delay = RECONNECT_FIRST_DELAY
        while True:
            session = self._client.session
            try:
                if session is None or session.closed:
                    raise aiohttp.ClientConnectionError("no HTTP session")
                async with asyncio.timeout(self._cfg.request_timeout):
                    ws = await session.ws_connect(
                        self.url,
                        heartbeat=self._cfg.ws_silence_timeout,
                        timeout=aiohttp.ClientWSTimeout(ws_close=self._cfg.connect_timeout),
                    )
            except (aiohttp.ClientError, TimeoutError, OSError) as err:
                _LOGGER.debug("ComfyUI websocket connect failed: %s", err)
            except Exception:  # noqa: BLE001 - e.g. a bad URL: keep trying, never die silently
                _LOGGER.exception("ComfyUI websocket connect failed unexpectedly")
            else:
                delay = RECONNECT_FIRST_DELAY
                try:
                    await self._read(ws)
                except (aiohttp.ClientError, TimeoutError, OSError) as err:
                    _LOGGER.debug("ComfyUI websocket dropped: %s", err)
                finally:
                    self._ws = None
                    await ws.close()
                    self._set_connected(False)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            delay = min(delay * 2, self._cfg.probe_interval)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        # first message: ask for previews that name their prompt (event 4); older ComfyUIs ignore it
        await ws.send_json(FEATURE_FLAGS)
        self._set_connected(True)
        # anything may have finished while we were away: let the waiters look at history once
        for tracker in self._trackers.values():
            if tracker.outcome is None:
                tracker.check_history = True
                tracker.changed.set()
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    self.handle_text(msg.data)
                except Exception:  # noqa: BLE001 - one odd message must not end the follower
                    _LOGGER.exception("could not handle ComfyUI websocket message %.200r", msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                self.handle_binary(msg.data)
            elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break

    def _set_connected(self, connected: bool) -> None:
        if connected == self._connected:
            return
        self._connected = connected
        _LOGGER.info("ComfyUI websocket %s", "connected" if connected else "disconnected")
        if not connected:
            self._set_active(None)
            for tracker in self._trackers.values():
                if tracker.outcome is None:
                    tracker.through_disconnect = True
        for cb in list(self.on_connection):
            _safe(cb, connected)

    # -- message parsing (public so recorded captures can be fed straight in) ----------------------

    def handle_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            _LOGGER.debug("ignoring non-JSON websocket text: %.80r", text)
            return
        self.handle_message(message)

    def handle_message(self, message: Any, *, now: float | None = None) -> None:
        """Dispatch one decoded ``{"type", "data"}`` message. Unknown or malformed ones are ignored."""
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return
        kind, data = message.get("type"), message["data"]
        now = time.monotonic() if now is None else now
        if kind == "status":
            self._on_status(data)
            return
        if kind == "feature_flags":
            return
        if kind in _CLIENT_MESSAGES or kind == "progress":
            self.last_busy = now
        prompt_id = data.get("prompt_id")
        if kind == "executing" and prompt_id is None:
            # sent to a socket that (re)connects mid-run: {"node": "3"} without prompt_id belongs to
            # the prompt already running, if we know it
            prompt_id = self._running_prompt()
            if prompt_id is None or data.get("node") is None:
                return
        if not isinstance(prompt_id, str):
            return
        tracker = self._trackers.get(prompt_id)
        if tracker is None:
            if kind == "progress":
                # another client's prompt (progress is broadcast), or one we stopped waiting for
                self._on_progress(None, prompt_id, data, now)
                return
            if prompt_id in self._done_ids or kind not in _CLIENT_MESSAGES:
                if kind in _TERMINAL or (kind == "executing" and data.get("node") is None):
                    self._release(prompt_id)
                elif kind in ("execution_start", "executing"):
                    self._set_active(prompt_id)
                return
            tracker = self.track(prompt_id, now=now)
        tracker.touch(now)
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is not None:
            handler(self, tracker, data, now)

    def handle_binary(self, data: bytes) -> None:
        """A latent preview goes to whoever follows its prompt (``Tracker.on_preview``); the prompt is
        the frame's own (event 4) or, for event 1, the one of ours that ComfyUI runs."""
        frame = parse_frame(data)
        if frame is None:
            return
        prompt_id = frame.prompt_id or self.active_prompt or self._running_prompt()
        tracker = self._trackers.get(prompt_id) if prompt_id is not None else None
        if tracker is not None and tracker.on_preview is not None and tracker.outcome is None and not tracker.ended:
            _safe(tracker.on_preview, frame)

    def _running_prompt(self) -> str | None:
        """The most recently started prompt of ours with no outcome yet."""
        for tracker in reversed(self._trackers.values()):
            if tracker.started is not None and tracker.outcome is None:
                return tracker.prompt_id
        return None

    def _on_status(self, data: dict[str, Any]) -> None:
        status = data.get("status")
        exec_info = status.get("exec_info") if isinstance(status, dict) else None
        remaining = exec_info.get("queue_remaining") if isinstance(exec_info, dict) else None
        if isinstance(remaining, int) and not isinstance(remaining, bool):
            self.queue_remaining = remaining
            if remaining > 0:
                self.last_busy = time.monotonic()
            for cb in list(self.on_queue):
                _safe(cb, remaining)
            if remaining == 0:
                # queue_remaining counts pending + running (server.py get_queue_info): at 0 nothing runs,
                # so any progress bar ends, also one of a prompt that is not ours, and no prompt is active
                if self.progress is not None:
                    self._release(self.progress.prompt_id)
                self._set_active(None)

    def _on_start(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        tracker.started = now
        self._set_active(tracker.prompt_id)

    def _on_cached(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        tracker.cached_nodes.update(str(n) for n in data.get("nodes") or [])

    def _on_executing(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        node = data.get("node")
        if node is None:  # always the last message of a prompt, sent after its history entry was written
            if tracker.outcome is None:  # no (trusted) execution_success/error before it: ask history
                self._unsettled(tracker)
            self._release(tracker.prompt_id)
            return
        if tracker.started is None:
            tracker.started = now
        self._set_active(tracker.prompt_id)
        tracker.ran_nodes.add(str(node))
        tracker.node_started[str(node)] = now

    def _on_executed(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        if data.get("node") is not None:
            tracker.output_nodes.add(str(data["node"]))
        tracker.images.extend(images_from_outputs(data.get("output")))

    def _on_success(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        if tracker.through_disconnect or not tracker.images:
            # an ``executed`` may have been lost: ComfyUI's history lists every output it recorded
            self._unsettled(tracker)
            return
        self._finish(tracker, tracker.result(now), now)

    def _on_error(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        if tracker.through_disconnect:
            self._unsettled(tracker)
            return
        self._finish(tracker, ComfyExecutionFailed(tracker.prompt_id, data), now)

    def _on_interrupted(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        if tracker.through_disconnect:
            self._unsettled(tracker)
            return
        self._finish(tracker, ComfyInterrupted(tracker.prompt_id, data), now)

    def _unsettled(self, tracker: Tracker) -> None:
        """The prompt has ended, but the socket cannot be trusted to say how: the waiter asks /history."""
        tracker.ended = True
        tracker.check_history = True
        tracker.changed.set()
        self._release(tracker.prompt_id)

    def _on_progress_message(self, tracker: Tracker, data: dict[str, Any], now: float) -> None:
        self._on_progress(tracker, tracker.prompt_id, data, now)

    def _on_progress(self, tracker: Tracker | None, prompt_id: str, data: dict[str, Any], now: float) -> None:
        value, maximum = data.get("value"), data.get("max")
        if not isinstance(value, (int, float)) or not isinstance(maximum, (int, float)) or maximum <= 0:
            return
        it_s = tracker.rate(str(data.get("node")), value, now) if tracker is not None else None
        eta = (maximum - value) / it_s if it_s else None
        self.progress = Progress(
            prompt_id,
            int(value),
            int(maximum),
            None if it_s is None else round(it_s, 3),
            None if eta is None else round(eta, 1),
        )
        for cb in list(self.on_progress):
            _safe(cb, self.progress)

    def _finish(self, tracker: Tracker, outcome: RunResult | ComfyUIError | None, now: float) -> None:
        if tracker.outcome is None and outcome is not None:
            tracker.finished = now
            tracker.outcome = outcome
            tracker.changed.set()
        self._release(tracker.prompt_id)

    def _release(self, prompt_id: str) -> None:
        """A prompt ended: it is no longer the active one, its progress bar goes away."""
        if self.active_prompt == prompt_id:
            self._set_active(None)
        if self.progress is not None and self.progress.prompt_id == prompt_id:
            self.progress = None
            for cb in list(self.on_progress):
                _safe(cb, None)

    def _set_active(self, prompt_id: str | None) -> None:
        if prompt_id == self.active_prompt:
            return
        self.active_prompt = prompt_id
        for cb in list(self.on_active):
            _safe(cb, prompt_id)

    # -- following prompts ----------------------------------------------------------------------

    def track(self, prompt_id: str, *, now: float | None = None) -> Tracker:
        """Start buffering a prompt's messages (call before submitting it; idempotent)."""
        tracker = self._trackers.get(prompt_id)
        if tracker is not None:
            return tracker
        now = time.monotonic() if now is None else now
        tracker = Tracker(prompt_id, created=now, last_message=now, through_disconnect=not self._connected)
        self._trackers[prompt_id] = tracker
        self._evict()
        return tracker

    def forget(self, prompt_id: str) -> None:
        """Stop tracking a prompt nobody waits for; its late messages are ignored from now on."""
        tracker = self._trackers.get(prompt_id)
        if tracker is not None and tracker.waiters > 0:
            return
        self._trackers.pop(prompt_id, None)
        self._done_ids[prompt_id] = None
        while len(self._done_ids) > MAX_TRACKED:
            self._done_ids.popitem(last=False)

    def outcome(self, prompt_id: str) -> RunResult | ComfyUIError | None:
        """The buffered outcome of a prompt, if it finished (for tests and diagnostics)."""
        tracker = self._trackers.get(prompt_id)
        return None if tracker is None else tracker.outcome

    def _evict(self) -> None:
        if len(self._trackers) <= MAX_TRACKED:
            return
        # finished first, then the oldest unwaited; never one somebody waits on
        for finished_only in (True, False):
            for pid, t in list(self._trackers.items()):
                if len(self._trackers) <= MAX_TRACKED:
                    return
                if t.waiters == 0 and (t.outcome is not None or not finished_only):
                    del self._trackers[pid]

    async def wait(self, prompt_id: str, timeout: float | None = None) -> RunResult:
        """Follow a prompt to its end: the result, or one of the ComfyUIError family.

        ``timeout`` (default ``render_timeout``) bounds the whole wait -> ComfyRenderTimeout.
        """
        limit = self._cfg.render_timeout if timeout is None else timeout
        tracker = self.track(prompt_id)
        tracker.waiters += 1
        try:
            async with asyncio.timeout(limit) as scope:
                outcome = await self._follow(tracker)
        except TimeoutError:
            if scope.expired():
                raise ComfyRenderTimeout(prompt_id, limit) from None
            raise
        finally:
            tracker.waiters -= 1
            # its trailing messages (status, executing{node: null}) must not open a new tracker
            self.forget(prompt_id)
        if isinstance(outcome, ComfyUIError):
            raise outcome
        return outcome

    async def _follow(self, tracker: Tracker) -> RunResult | ComfyUIError:
        cfg = self._cfg
        unreachable_since: float | None = None
        missing_polls = 0
        while tracker.outcome is None:
            now = time.monotonic()
            quiet = now - tracker.last_message
            listen = not tracker.check_history and not tracker.ended  # after its end only history speaks
            if self._connected and quiet < cfg.ws_silence_timeout and listen:
                await self._wait_changed(tracker, cfg.ws_silence_timeout - quiet)
                continue
            tracker.check_history = False
            try:
                outcome, known = await self._poll(tracker.prompt_id)
            except ComfyUnreachable as err:
                unreachable_since = unreachable_since or now
                # ComfyUI gone for longer than we give a silent socket: it died under this render
                if now - unreachable_since >= cfg.ws_silence_timeout:
                    return ComfyLost(f"ComfyUI went away during the render ({err.message})", prompt_id=tracker.prompt_id)
            else:
                unreachable_since = None
                if outcome is not None:  # ComfyUI's own record: the final word, also over the socket's
                    self._settle_from_history(tracker, outcome)
                    break
                if tracker.outcome is not None:  # the socket settled it (and history has no entry yet)
                    break
                missing_polls = 0 if known else missing_polls + 1
                if missing_polls >= LOST_AFTER_POLLS:
                    return ComfyLost(
                        "ComfyUI no longer knows this prompt (restarted, or it was deleted from the queue)",
                        prompt_id=tracker.prompt_id,
                    )
            await self._wait_changed(tracker, cfg.history_poll_interval)
        assert tracker.outcome is not None  # the loop ends only once it is set
        return tracker.outcome

    def _settle_from_history(self, tracker: Tracker, outcome: RunResult | ComfyUIError) -> None:
        done = time.monotonic()
        if isinstance(outcome, RunResult):  # history has ComfyUI's clock; add what we measured
            ours = tracker.result(done).timings
            timings = {**{k: v for k, v in ours.items() if k == "queue_s"}, **outcome.timings}
            timings["comfyui_s"] = round(done - tracker.created, 3)
            outcome = replace(outcome, timings=timings)
        tracker.finished = done
        tracker.outcome = outcome
        tracker.changed.set()
        self._release(tracker.prompt_id)

    async def _poll(self, prompt_id: str) -> tuple[RunResult | ComfyUIError | None, bool]:
        """One fallback look: (outcome or None, whether ComfyUI still knows the prompt).

        The queue is read before history: ComfyUI moves a prompt from the queue into history in one
        step, so "not queued, then not in history" really means gone.
        """
        queue = await self._client.queue()
        queued = prompt_id in queue
        entry = await self._client.history(prompt_id)
        outcome = result_from_history(prompt_id, entry)
        return outcome, queued or entry is not None

    @staticmethod
    async def _wait_changed(tracker: Tracker, seconds: float) -> None:
        tracker.changed.clear()
        if tracker.outcome is not None or tracker.check_history:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0)):
                await tracker.changed.wait()


_TERMINAL = frozenset({"execution_success", "execution_error", "execution_interrupted"})

_HANDLERS: dict[str, Callable[[ComfyWebsocket, Tracker, dict[str, Any], float], None]] = {
    "execution_start": ComfyWebsocket._on_start,
    "execution_cached": ComfyWebsocket._on_cached,
    "executing": ComfyWebsocket._on_executing,
    "executed": ComfyWebsocket._on_executed,
    "execution_success": ComfyWebsocket._on_success,
    "execution_error": ComfyWebsocket._on_error,
    "execution_interrupted": ComfyWebsocket._on_interrupted,
    "progress": ComfyWebsocket._on_progress_message,
    # progress_state repeats every node's state so far: nothing we need beyond progress/executing
}


def _safe(cb: Callable[..., None], *args: Any) -> None:
    """A listener's bug must not kill the websocket reader."""
    try:
        cb(*args)
    except Exception:  # noqa: BLE001 - logged, and the reader goes on
        _LOGGER.exception("ComfyUI websocket listener %r failed", cb)
