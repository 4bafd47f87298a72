"""ComfyWebsocket over a real socket: results from the websocket, from history when the socket is
silent or drops, and the failures (lost prompt, ComfyUI gone, render timeout).

A scripted ComfyUI double plays recorded message sequences (tests/captures) exactly when a test
wants them, which the general-purpose stand-in cannot: before POST /prompt answers, around a
dropped socket, mixed with binary frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hal0_bridge.comfyui.client import ComfyUIClient, ImageRef, RunResult
from hal0_bridge.comfyui.errors import (
    ComfyExecutionFailed,
    ComfyInterrupted,
    ComfyLost,
    ComfyRejected,
    ComfyRenderTimeout,
    ComfyServerError,
    ComfyUnreachable,
)
from hal0_bridge.comfyui.facade import ComfyUI
from hal0_bridge.comfyui.websocket import ComfyWebsocket
from hal0_bridge.config import ComfyConfig, build
from hal0_bridge.status import StatusHub

from tests.support.comfyui_standin import ComfyStandIn

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
HANG_GUARD = 30  # bound for waits that must end on their own; never reached unless something hangs
PID = "11111111-2222-3333-4444-555555555555"


def script(name: str, prompt_id: str = PID) -> list[dict[str, Any]]:
    """A recorded message sequence, re-addressed to ``prompt_id``."""
    lines = [json.loads(line) for line in (CAPTURES / name).read_text().splitlines() if line.strip()]
    ids = [m["data"]["prompt_id"] for m in lines if isinstance(m.get("data"), dict) and "prompt_id" in m["data"]]
    text = json.dumps(lines)
    for old in dict.fromkeys(ids):
        text = text.replace(old, prompt_id)
    return json.loads(text)


def history(name: str, prompt_id: str = PID) -> dict[str, Any]:
    ((old, entry),) = json.loads((CAPTURES / name).read_text()).items()
    return {prompt_id: json.loads(json.dumps(entry).replace(old, prompt_id))}


def cfg_for(url: str, **overrides: float) -> ComfyConfig:
    settings = {
        "connect_timeout": 0.5,
        "request_timeout": 1.0,
        "probe_interval": 0.2,
        "probe_timeout": 0.3,
        "render_timeout": 20.0,
        "ws_silence_timeout": 0.3,
        "history_poll_interval": 0.05,
        **overrides,
    }
    return build({"comfyui": {"url": url, **settings}}).comfyui


class ScriptedComfy:
    """Just enough ComfyUI: /ws, /prompt, /history/<id>, /queue, /interrupt, /system_stats."""

    def __init__(self) -> None:
        self.sockets: list[web.WebSocketResponse] = []
        self.connects = 0
        self.history: dict[str, Any] = {}
        self.running: list[str] = []
        self.pending: list[str] = []
        self.posted: list[dict[str, Any]] = []
        self.history_reads = 0
        self.controls: list[tuple[str, Any]] = []  # POST /interrupt and /queue bodies
        # run inside POST /prompt before it answers (the prompt_id is the argument)
        self.before_answer: Callable[[str], Awaitable[None]] | None = None
        # run on each websocket connect, after the status greeting
        self.on_connect: Callable[[int], Awaitable[None]] | None = None
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/history/{pid}", self._history)
        app.router.add_get("/queue", self._queue)
        app.router.add_get("/system_stats", self._stats)
        app.router.add_post("/interrupt", self._control)
        app.router.add_post("/queue", self._control)
        self.runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        return self.url

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def send(self, *messages: dict[str, Any] | bytes) -> None:
        """To the newest socket (ComfyUI routes a client's messages to its latest socket)."""
        ws = self.sockets[-1]
        for m in messages:
            if isinstance(m, bytes):
                await ws.send_bytes(m)
            else:
                await ws.send_str(json.dumps(m))

    async def drop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connects += 1
        self.sockets.append(ws)
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "x"}})
        if self.on_connect is not None:
            await self.on_connect(self.connects)
        async for _ in ws:
            pass
        self.sockets.remove(ws)
        return ws

    async def _prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posted.append(body)
        pid = body.get("prompt_id") or PID
        self.running.append(pid)
        if self.before_answer is not None:
            await self.before_answer(pid)
        return web.json_response({"prompt_id": pid, "number": len(self.posted), "node_errors": {}})

    async def _history(self, request: web.Request) -> web.Response:
        self.history_reads += 1
        pid = request.match_info["pid"]
        return web.json_response({pid: self.history[pid]} if pid in self.history else {})

    async def _queue(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "queue_running": [[0, pid, {}, {}, []] for pid in self.running],
                "queue_pending": [[1, pid, {}, {}, []] for pid in self.pending],
            }
        )

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response(json.loads((CAPTURES / "system_stats.json").read_text()))

    async def _control(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.controls.append((request.path, json.loads(raw) if raw else None))
        return web.Response()

    def finish(self, pid: str, history_file: str) -> None:
        """ComfyUI's task_done: out of the queue, into history, in one step."""
        if pid in self.running:
            self.running.remove(pid)
        self.history.update(history(history_file, pid))


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_GUARD):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.fixture
async def comfy() -> AsyncIterator[ScriptedComfy]:
    server = ScriptedComfy()
    await server.start()
    yield server
    await server.stop()


@contextlib.asynccontextmanager
async def follower(url: str, **overrides: float) -> AsyncIterator[ComfyWebsocket]:
    cfg = cfg_for(url, **overrides)
    async with aiohttp.ClientSession() as session:
        ws = ComfyWebsocket(ComfyUIClient(session, cfg, "cafe"), cfg)
        await ws.start()
        try:
            yield ws
        finally:
            await ws.stop()


@pytest.fixture
async def ws(comfy: ScriptedComfy) -> AsyncIterator[ComfyWebsocket]:
    async with follower(comfy.url) as follower_ws:
        await until(lambda: follower_ws.connected)
        yield follower_ws


async def submit(ws: ComfyWebsocket) -> str:
    ws.track(PID)
    submitted = await ws._client.submit({"9": {"class_type": "SaveImage", "inputs": {}}}, prompt_id=PID)
    return submitted.prompt_id


def preview_frame() -> bytes:
    """A PREVIEW_IMAGE binary frame as ComfyUI sends it: event 1, image type 1 (JPEG), bytes."""
    return struct.pack(">II", 1, 1) + b"\xff\xd8\xff\xe0" + b"\x00" * 64


# -- results from the websocket ----------------------------------------------------------------------


async def test_success_arrives_over_the_websocket(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    await comfy.send(*script("ws_messages_success.jsonl"))
    result = await ws.wait(pid)
    assert result.prompt_id == pid
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]
    assert comfy.history_reads == 0  # the socket told us everything


async def test_the_socket_uses_our_client_id(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    await submit(ws)
    assert comfy.posted[0]["client_id"] == "cafe"
    assert ws.url.endswith("/ws?clientId=cafe")


async def test_messages_arriving_before_wait_are_kept(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    async def run_to_the_end_before_answering(pid: str) -> None:
        await comfy.send(*script("ws_messages_cached.jsonl", pid))
        await until(lambda: ws.outcome(pid) is not None)

    comfy.before_answer = run_to_the_end_before_answering
    pid = await submit(ws)
    result = await ws.wait(pid)
    assert result.cached is True
    assert comfy.history_reads == 0


async def test_messages_for_an_untracked_prompt_are_buffered_for_a_late_wait(
    comfy: ScriptedComfy, ws: ComfyWebsocket
) -> None:
    await comfy.send(*script("ws_messages_success.jsonl", "late"))
    await until(lambda: ws.outcome("late") is not None)
    result = await ws.wait("late")
    assert result.prompt_id == "late" and len(result.images) == 1


async def test_execution_error_fails_the_wait(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    await comfy.send(*script("ws_messages_error.jsonl"))
    with pytest.raises(ComfyExecutionFailed) as caught:
        await ws.wait(pid)
    assert caught.value.node_type == "VAEDecode"


async def test_interruption_fails_the_wait(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    first = script("ws_messages_interrupted.jsonl")
    await comfy.send(*first)
    with pytest.raises(ComfyInterrupted):
        await ws.wait(pid)


async def test_binary_preview_frames_are_ignored(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    messages: list[dict[str, Any] | bytes] = []
    for m in script("ws_messages_preview_latent2rgb.jsonl"):
        messages.append(preview_frame() if m.get("binary") else m)
    await comfy.send(*messages)
    result = await ws.wait(pid)
    assert [r.type for r in result.images] == ["output"]


async def test_queue_length_is_reported_from_status_messages(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    seen: list[int] = []
    ws.on_queue.append(seen.append)
    await comfy.send({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 3}}}})
    await until(lambda: seen == [3])


# -- history fallback ----------------------------------------------------------------------------


async def test_silent_websocket_falls_back_to_history(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    comfy.finish(pid, "history_done.json")  # finished, but the socket never says so
    result = await ws.wait(pid)
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]
    assert comfy.history_reads >= 1
    assert result.timings["exec_s"] == pytest.approx(0.866)  # ComfyUI's own timestamps
    assert result.timings["comfyui_s"] > 0


async def test_history_fallback_waits_while_the_prompt_is_queued(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    waiter = asyncio.create_task(ws.wait(pid))
    await until(lambda: comfy.history_reads >= 3)  # polled a few times while it still ran
    assert not waiter.done()
    comfy.finish(pid, "history_cached.json")
    result = await waiter
    assert result.cached is True


async def test_history_error_fails_the_wait(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    comfy.finish(pid, "history_error.json")
    with pytest.raises(ComfyExecutionFailed) as caught:
        await ws.wait(pid)
    assert caught.value.exception_type == "RuntimeError"


async def test_history_interruption_fails_the_wait(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    comfy.finish(pid, "history_interrupted.json")
    with pytest.raises(ComfyInterrupted):
        await ws.wait(pid)


async def test_socket_dropped_mid_run_reconnects_and_completes(comfy: ScriptedComfy) -> None:
    messages = script("ws_messages_success.jsonl")
    half = len(messages) // 2

    async def resume(connects: int) -> None:
        if connects == 2:  # what a reconnecting client gets mid-run, then the rest of the run
            await comfy.send({"type": "executing", "data": {"node": "3"}}, *messages[half:-1])
            comfy.finish(PID, "history_done.json")  # task_done, then executing {node: null}
            await comfy.send(messages[-1])

    comfy.on_connect = resume
    # a long silence timeout: only the reconnected socket can finish this in time
    async with follower(comfy.url, ws_silence_timeout=60) as ws:
        await until(lambda: ws.connected)
        pid = await submit(ws)
        await comfy.send(*messages[:half])
        await until(lambda: ws.active_prompt == pid)
        await comfy.drop()
        result = await ws.wait(pid)
    assert comfy.connects == 2
    assert len(result.images) == 1
    assert comfy.history_reads >= 1  # it lived through the drop: ComfyUI's record settled it


async def test_finish_missed_while_disconnected_comes_from_history(comfy: ScriptedComfy) -> None:
    messages = script("ws_messages_success.jsonl")

    async def finished_while_away(connects: int) -> None:
        if connects == 2:
            comfy.finish(PID, "history_done.json")  # the new socket hears nothing about it

    comfy.on_connect = finished_while_away
    async with follower(comfy.url, ws_silence_timeout=60) as ws:
        await until(lambda: ws.connected)
        pid = await submit(ws)
        await comfy.send(*messages[:5])
        await until(lambda: ws.active_prompt == pid)
        await comfy.drop()
        result = await ws.wait(pid)
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]


# -- lost messages: the outcome is what ComfyUI recorded -----------------------------------------------


def without(messages: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") not in kinds]


def upto(messages: list[dict[str, Any]], kind: str, node: str | None = None) -> int:
    """Index just past the first message of ``kind`` (for ``executing``: at ``node``)."""
    for i, m in enumerate(messages):
        if m.get("type") == kind and (node is None or m["data"].get("node") == node):
            return i + 1
    raise AssertionError(f"no {kind} {node or ''} in the script")


async def test_executing_null_without_execution_success_is_not_a_success(
    comfy: ScriptedComfy, ws: ComfyWebsocket
) -> None:
    """A lost ``execution_error``: the socket only sees the prompt end. ComfyUI's history says it failed."""
    pid = await submit(ws)
    comfy.finish(pid, "history_error.json")
    await comfy.send(*without(script("ws_messages_error.jsonl"), "execution_error"))
    with pytest.raises(ComfyExecutionFailed) as caught:
        await ws.wait(pid)
    assert caught.value.exception_type == "RuntimeError"


async def test_lost_execution_success_is_settled_by_history(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    comfy.finish(pid, "history_done.json")
    await comfy.send(*without(script("ws_messages_success.jsonl"), "execution_success"))
    result = await ws.wait(pid)
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]
    assert comfy.history_reads >= 1  # the socket's "it is over" alone is no success


async def test_lost_executed_message_takes_the_images_from_history(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    """execution_success arrives but the ``executed`` naming the image does not: never ``data: []``."""
    pid = await submit(ws)
    comfy.finish(pid, "history_done.json")
    await comfy.send(*without(script("ws_messages_success.jsonl"), "executed"))
    result = await ws.wait(pid)
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]


async def test_history_that_records_no_success_fails_the_wait(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    entry = history("history_done.json", pid)
    entry[pid]["status"] = {"status_str": "running", "completed": False, "messages": []}
    comfy.running.remove(pid)
    comfy.history.update(entry)
    with pytest.raises(ComfyExecutionFailed) as caught:
        await ws.wait(pid)
    assert "does not record a success" in caught.value.message


async def reconnect_with(comfy: ScriptedComfy, before: list[dict[str, Any]], after: list[dict[str, Any]],
                         history_file: str) -> RunResult:
    """Run ``before`` on the first socket, drop it; the prompt ends while we are away (``history_file``)
    and the second socket gets ``after``. A long silence timeout: only the reconnect can settle it."""

    async def on_connect(connects: int) -> None:
        if connects == 2:
            comfy.finish(PID, history_file)
            await comfy.send(*after)

    comfy.on_connect = on_connect
    async with follower(comfy.url, ws_silence_timeout=60) as ws:
        await until(lambda: ws.connected)
        pid = await submit(ws)
        await comfy.send(*before)
        await until(lambda: ws.active_prompt == pid)
        await comfy.drop()
        return await ws.wait(pid)


async def test_execution_error_lost_across_a_reconnect_is_an_error(comfy: ScriptedComfy) -> None:
    """The error was sent while the socket was down; the new socket only hears the prompt end."""
    messages = script("ws_messages_error.jsonl")
    cut = upto(messages, "executing", "3")
    tail = [m for m in messages[cut:] if m["type"] in ("status", "executing")]
    with pytest.raises(ComfyExecutionFailed) as caught:
        await reconnect_with(comfy, messages[:cut], tail, "history_error.json")
    assert caught.value.node_type == "VAEDecode"


async def test_executed_lost_across_a_reconnect_still_returns_the_image(comfy: ScriptedComfy) -> None:
    """``executed`` went out while the socket was down; execution_success reaches the new socket. The
    socket would answer "success, no image"; history, the final word, has the image."""
    messages = script("ws_messages_success.jsonl")
    cut = upto(messages, "executing", "9")
    tail = [m for m in messages[cut:] if m["type"] != "executed"]
    result = await reconnect_with(comfy, messages[:cut], tail, "history_done.json")
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]


async def test_success_on_the_socket_does_not_override_a_failure_in_history(comfy: ScriptedComfy) -> None:
    """A prompt that lived through a disconnect: whatever the socket says, /history decides."""
    messages = script("ws_messages_success.jsonl")
    cut = upto(messages, "executing", "9")
    result_or_error: Any
    try:
        result_or_error = await reconnect_with(comfy, messages[:cut], messages[cut:], "history_error.json")
    except ComfyExecutionFailed as err:
        result_or_error = err
    assert isinstance(result_or_error, ComfyExecutionFailed)


async def test_render_cancelled_before_submit_answers_takes_the_prompt_back(comfy: ScriptedComfy) -> None:
    queued = asyncio.Event()

    async def queue_then_stall(pid: str) -> None:
        queued.set()
        await asyncio.sleep(HANG_GUARD)  # the answer never comes in time

    comfy.before_answer = queue_then_stall
    async with facade(comfy.url) as comfyui:
        render = asyncio.create_task(comfyui.render(graph()))
        await queued.wait()
        render.cancel()
        with pytest.raises(asyncio.CancelledError):
            await render
    (pid,) = comfy.running  # queued by ComfyUI although we never learned its answer
    assert comfy.controls == [("/queue", {"delete": [pid]}), ("/interrupt", {"prompt_id": pid})]


# -- failures ------------------------------------------------------------------------------------------


async def test_prompt_comfyui_forgot_is_lost_with_a_502(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    comfy.running.clear()  # deleted from the queue (or ComfyUI restarted): never enters history
    with pytest.raises(ComfyLost) as caught:
        await ws.wait(pid)
    assert caught.value.to_api_error().status == 502


async def test_comfyui_dying_mid_render_fails_with_a_502(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    await comfy.send(*script("ws_messages_success.jsonl")[:5])
    await comfy.stop()
    with pytest.raises(ComfyLost) as caught:
        await asyncio.wait_for(ws.wait(pid), HANG_GUARD)
    api = caught.value.to_api_error()
    assert (api.status, api.code) == (502, "image.upstream_failed")


async def test_render_running_past_its_timeout_is_a_504(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)  # stays "running" forever
    with pytest.raises(ComfyRenderTimeout) as caught:
        await ws.wait(pid, timeout=0.5)
    api = caught.value.to_api_error()
    assert (api.status, api.code) == (504, "image.timeout")


async def test_follower_reconnects_after_comfyui_comes_back(comfy: ScriptedComfy) -> None:
    async with follower(comfy.url) as ws:
        await until(lambda: ws.connected)
        port = int(comfy.url.rsplit(":", 1)[1])
        await comfy.stop()
        await until(lambda: not ws.connected)
        again = ScriptedComfy()
        await again.start(port)
        try:
            await until(lambda: ws.connected)
            assert again.connects == 1
        finally:
            await again.stop()


async def test_connection_changes_are_reported(comfy: ScriptedComfy) -> None:
    seen: list[bool] = []
    async with follower(comfy.url) as ws:
        ws.on_connection.append(seen.append)
        await until(lambda: seen == [True])
        await comfy.stop()
        await until(lambda: seen == [True, False])


async def test_wait_results_are_typed(comfy: ScriptedComfy, ws: ComfyWebsocket) -> None:
    pid = await submit(ws)
    await comfy.send(*script("ws_messages_success_10_steps.jsonl"))
    assert isinstance(await ws.wait(pid), RunResult)


# == the facade against the ComfyUI stand-in ===========================================================

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def graph(steps: int = 1, seed: int = 42, ckpt: str = "v1-5-pruned-emaonly.safetensors") -> dict[str, Any]:
    """The recorded standard 7-node graph (prompt_request_example.json) with steps/seed/checkpoint set."""
    g = json.loads((CAPTURES / "prompt_request_example.json").read_text())["prompt"]
    g["3"]["inputs"].update(steps=steps, seed=seed)
    g["4"]["inputs"]["ckpt_name"] = ckpt
    return g


@pytest.fixture
async def standin() -> AsyncIterator[ComfyStandIn]:
    async with ComfyStandIn() as server:
        yield server


@contextlib.asynccontextmanager
async def facade(url: str, **overrides: float) -> AsyncIterator[ComfyUI]:
    comfy = ComfyUI(cfg_for(url, **overrides), StatusHub())
    probed = asyncio.Event()
    comfy.monitor.on_probe.append(probed.set)
    await comfy.start()
    try:
        await until(lambda: comfy.ws.connected or probed.is_set())
        yield comfy
    finally:
        await comfy.stop()


@pytest.fixture
async def comfyui(standin: ComfyStandIn) -> AsyncIterator[ComfyUI]:
    async with facade(standin.url) as comfy:
        await until(lambda: comfy.ws.connected)
        yield comfy


async def test_render_returns_saved_pngs(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    result = await comfyui.render(graph())
    assert len(result.images) == 1 and result.images[0].type == "output"
    assert result.cached is False
    (png,) = await comfyui.fetch_images(result)
    assert png.startswith(PNG_SIGNATURE)
    assert standin.counters.prompts_succeeded == 1


async def test_identical_render_comes_back_cached(comfyui: ComfyUI) -> None:
    first = await comfyui.render(graph(seed=7))
    again = await comfyui.render(graph(seed=7))
    assert (first.cached, again.cached) == (False, True)
    assert again.images == first.images


async def test_failing_render_raises_comfyuis_exception(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.fail_next_prompts = 1
    with pytest.raises(ComfyExecutionFailed) as caught:
        await comfyui.render(graph())
    api = caught.value.to_api_error()
    assert (api.status, api.code) == (502, "image.upstream_failed")
    assert "to have 4 channels" in api.message


async def test_rejected_graph_keeps_node_errors(comfyui: ComfyUI) -> None:
    with pytest.raises(ComfyRejected) as caught:
        await comfyui.render(graph(ckpt="nope.safetensors"))
    assert caught.value.node_errors["4"]["errors"][0]["type"] == "value_not_in_list"
    assert "nope.safetensors" in caught.value.to_api_error().message


async def test_plain_text_500_on_submit_is_a_server_error(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.post_prompt_500 = 1
    with pytest.raises(ComfyServerError) as caught:
        await comfyui.render(graph())
    assert "Server got itself in trouble" in caught.value.to_api_error().message


async def test_render_interrupted_in_comfyui_raises_interrupted(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.step_seconds = 0.05
    render = asyncio.create_task(comfyui.render(graph(steps=400)))
    await until(lambda: comfyui.ws.progress is not None)
    await comfyui.client.interrupt()
    with pytest.raises(ComfyInterrupted):
        await render


async def test_cancelled_render_is_interrupted_in_comfyui(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.step_seconds = 0.05
    render = asyncio.create_task(comfyui.render(graph(steps=400)))
    await until(lambda: comfyui.ws.progress is not None)
    render.cancel()
    with pytest.raises(asyncio.CancelledError):
        await render
    await standin.wait_idle()
    assert standin.counters.prompts_interrupted == 1
    assert standin.counters.prompts_succeeded == 0


async def test_cancelled_pending_render_never_runs(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.step_seconds = 0.05
    first = asyncio.create_task(comfyui.render(graph(steps=400, seed=1)))
    await until(lambda: comfyui.ws.progress is not None)
    second = asyncio.create_task(comfyui.render(graph(steps=20, seed=2)))
    await until(lambda: standin.counters.prompts_accepted == 2)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    await comfyui.client.interrupt()  # end the first one; the queue behind it must be empty
    with pytest.raises(ComfyInterrupted):
        await first
    await standin.wait_idle()
    assert standin.counters.prompts_started == 1  # the second was deleted from the queue


async def test_render_timeout_is_a_504_and_stops_the_prompt(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.step_seconds = 0.05
    with pytest.raises(ComfyRenderTimeout):
        await comfyui.render(graph(steps=400), timeout=0.3)
    await standin.wait_idle()
    assert standin.counters.prompts_interrupted == 1


async def test_silent_websocket_render_completes_from_history(standin: ComfyStandIn) -> None:
    standin.settings.ws_silent = True
    async with facade(standin.url) as comfy:
        await until(lambda: comfy.ws.connected)
        result = await comfy.render(graph())
    assert len(result.images) == 1
    assert standin.counters.history_requests >= 1


async def test_websocket_dropped_mid_render_still_completes(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.step_seconds = 0.02
    render = asyncio.create_task(comfyui.render(graph(steps=30)))
    await until(lambda: comfyui.ws.progress is not None)
    assert await standin.drop_websockets() == 1
    result = await render
    assert len(result.images) == 1
    assert standin.counters.ws_connects >= 2


async def test_render_against_no_comfyui_is_unreachable_503() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but never listening: connections are refused
        async with facade(f"http://127.0.0.1:{port}") as comfy:
            with pytest.raises(ComfyUnreachable) as caught:
                await comfy.render(graph())
    assert caught.value.to_api_error().status == 503


# -- lost messages against the stand-in (ComfyUI's history stays true, the socket does not) -------------


@pytest.mark.parametrize("lost", ["executed", "execution_success"])
async def test_a_lost_message_still_gives_the_recorded_image(standin: ComfyStandIn, comfyui: ComfyUI, lost: str) -> None:
    standin.settings.drop_messages, standin.settings.drop_messages_prompts = [lost], 1
    result = await comfyui.render(graph())
    assert len(result.images) == 1
    (png,) = await comfyui.fetch_images(result)
    assert png.startswith(PNG_SIGNATURE)


async def test_a_lost_execution_error_is_still_an_error(standin: ComfyStandIn, comfyui: ComfyUI) -> None:
    standin.settings.fail_next_prompts = 1
    standin.settings.drop_messages, standin.settings.drop_messages_prompts = ["execution_error"], 1
    with pytest.raises(ComfyExecutionFailed) as caught:
        await comfyui.render(graph())
    assert "to have 4 channels" in caught.value.message


@pytest.mark.parametrize(("after", "asks_history"), [("progress", True), ("executed", True), ("execution_success", False)])
async def test_a_socket_cut_mid_render_still_gives_the_image(
    standin: ComfyStandIn, comfyui: ComfyUI, after: str, asks_history: bool
) -> None:
    """Cut before the success arrived: the prompt lived through a disconnect, so /history settles it."""
    standin.settings.step_seconds = 0.02
    standin.settings.ws_close_after = after
    result = await comfyui.render(graph(steps=5))
    assert len(result.images) == 1
    assert (standin.counters.history_requests >= 1) is asks_history
