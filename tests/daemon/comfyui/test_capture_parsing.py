"""Our ComfyUI parsers against what a real ComfyUI 0.3.64 sent (tests/captures, see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hal0_bridge.comfyui.client import ComfyUIClient, ImageRef, RunResult, _queue_ids
from hal0_bridge.comfyui.errors import ComfyExecutionFailed, ComfyInterrupted, ComfyRejected
from hal0_bridge.comfyui.history import result_from_history
from hal0_bridge.comfyui.websocket import MAX_TRACKED, ComfyWebsocket
from hal0_bridge.config import build
from hal0_bridge.gpu.memory import GttReading, memory_from
from hal0_bridge.status import Progress

CAPTURES = Path(__file__).resolve().parents[2] / "captures"


def load(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())


def jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CAPTURES / name).read_text().splitlines() if line.strip()]


def prompt_ids(messages: list[dict[str, Any]]) -> list[str]:
    ids: list[str] = []
    for m in messages:
        pid = (m.get("data") or {}).get("prompt_id")
        if pid and pid not in ids:
            ids.append(pid)
    return ids


@pytest.fixture
async def ws():
    """A follower without a real socket: messages are fed in straight from the capture files, as if
    they came over a socket that stayed connected (a prompt open across a disconnect defers to history)."""
    cfg = build({}).comfyui
    async with aiohttp.ClientSession() as session:
        follower = ComfyWebsocket(ComfyUIClient(session, cfg, "ca0b3fb88f42417d97e3cf2770d72575"), cfg)
        follower._set_connected(True)  # noqa: SLF001 - the fiction of this file: one socket, never dropped
        yield follower


def replay(ws: ComfyWebsocket, name: str, *, step: float = 0.25) -> list[dict[str, Any]]:
    """Feed a capture, one message every ``step`` seconds of a synthetic clock; binary frame
    descriptions go in as they are (they have no ``type``/``data``, like an unknown frame)."""
    messages = jsonl(name)
    for i, m in enumerate(messages):
        ws.handle_message(m, now=1000.0 + i * step)
    return messages


# -- websocket sequences ---------------------------------------------------------------------------


async def test_success_run_yields_the_saved_image(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_success.jsonl")
    result = ws.outcome(prompt_ids(messages)[0])
    assert isinstance(result, RunResult)
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]
    assert result.cached is False


async def test_fully_cached_run_is_reported_as_cached(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_cached.jsonl")
    result = ws.outcome(prompt_ids(messages)[0])
    assert isinstance(result, RunResult)
    assert result.cached is True
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]


async def test_partially_cached_run_is_not_reported_as_cached(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_partial_cache.jsonl")
    result = ws.outcome(prompt_ids(messages)[0])
    assert isinstance(result, RunResult)
    assert result.cached is False
    assert len(result.images) == 1


@pytest.mark.parametrize(
    "name",
    [
        "ws_messages_after_free_run.jsonl",
        "ws_messages_success_10_steps.jsonl",
        "ws_messages_success_sdxl_512.jsonl",
        "ws_messages_preview_latent2rgb.jsonl",
        "ws_messages_preview_latent2rgb_metadata.jsonl",
    ],
)
async def test_every_recorded_success_run_finishes_with_one_image(ws: ComfyWebsocket, name: str) -> None:
    messages = replay(ws, name)
    result = ws.outcome(prompt_ids(messages)[0])
    assert isinstance(result, RunResult)
    assert [r.type for r in result.images] == ["output"]


async def test_run_timings_come_from_message_arrival(ws: ComfyWebsocket) -> None:
    pid = prompt_ids(jsonl("ws_messages_success.jsonl"))[0]
    ws.track(pid, now=990.0)  # submitted 10 s before the capture's first message
    replay(ws, "ws_messages_success.jsonl", step=0.5)
    result = ws.outcome(pid)
    assert isinstance(result, RunResult)
    # execution_start is line 3 (t=1001.0), execution_success line 29 (t=1014.0)
    assert result.timings == {"comfyui_s": 24.0, "queue_s": 11.0, "exec_s": 13.0}


async def test_img2img_preview_node_is_not_a_result(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_img2img.jsonl")
    result = ws.outcome(prompt_ids(messages)[0])
    assert isinstance(result, RunResult)
    assert result.images == [ImageRef("i2i_00001_.png", "", "output")]


@pytest.mark.parametrize(
    "name", ["ws_messages_save_image_websocket.jsonl", "ws_messages_save_image_websocket_metadata.jsonl"]
)
async def test_a_success_that_names_no_image_is_left_to_history(ws: ComfyWebsocket, name: str) -> None:
    """SaveImageWebsocket sends its PNG as a binary frame and no ``executed``: the socket's success names
    no image, so the waiter asks /history (whose outputs for that node are empty: a 502, never ``data: []``)."""
    messages = replay(ws, name)
    pid = prompt_ids(messages)[0]
    assert ws.outcome(pid) is None
    entry = load(name.replace("ws_messages_", "history_").replace(".jsonl", ".json"))
    result = result_from_history(pid, next(iter(entry.values())))
    assert isinstance(result, RunResult) and result.images == []


async def test_execution_error_keeps_comfyuis_exception(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_error.jsonl")
    err = ws.outcome(prompt_ids(messages)[0])
    assert isinstance(err, ComfyExecutionFailed)
    assert err.exception_type == "RuntimeError"
    assert err.node_id == "3" and err.node_type == "VAEDecode"
    assert "expected input[1, 16, 8, 8] to have 4 channels" in err.exception_message
    api = err.to_api_error()
    assert (api.status, api.code) == (502, "image.upstream_failed")
    assert "to have 4 channels" in api.message
    assert api.details["comfyui"]["exception_type"] == "RuntimeError"
    assert "current_inputs" not in api.details["comfyui"]


async def test_loadimage_error_names_pil_exception(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_error_loadimage.jsonl")
    err = ws.outcome(prompt_ids(messages)[0])
    assert isinstance(err, ComfyExecutionFailed)
    assert err.exception_type == "PIL.UnidentifiedImageError"
    assert "PIL.UnidentifiedImageError" in err.to_api_error().message


async def test_both_interrupted_prompts_end_interrupted(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_interrupted.jsonl")
    first, second = (ws.outcome(pid) for pid in prompt_ids(messages))
    assert isinstance(first, ComfyInterrupted) and isinstance(second, ComfyInterrupted)
    assert (first.node_id, first.node_type) == ("3", "KSampler")
    assert first.to_api_error().status == 502


async def test_interrupted_capture_reports_every_queue_length(ws: ComfyWebsocket) -> None:
    seen: list[int] = []
    ws.on_queue.append(seen.append)
    replay(ws, "ws_messages_interrupted.jsonl")
    assert seen == [1, 1, 2, 3, 2, 1, 1, 0]


async def test_progress_carries_steps_rate_and_eta(ws: ComfyWebsocket) -> None:
    seen: list[Progress | None] = []
    ws.on_progress.append(seen.append)
    messages = replay(ws, "ws_messages_success_10_steps.jsonl", step=0.5)
    pid = prompt_ids(messages)[0]
    steps = [p for p in seen if p is not None]
    assert [p.step for p in steps] == list(range(1, 11))
    assert {p.steps for p in steps} == {10} and {p.prompt_id for p in steps} == {pid}
    assert all(p.it_s is not None and p.it_s > 0 for p in steps[1:])
    assert steps[-1].eta_s == 0
    assert seen[-1] is None  # the bar goes away when the prompt ends


async def test_progress_rate_follows_the_synthetic_clock(ws: ComfyWebsocket) -> None:
    """Two progress messages 0.25 s apart with one step between them: 4 it/s."""
    seen: list[Progress | None] = []
    ws.on_progress.append(seen.append)
    ws.handle_message({"type": "execution_start", "data": {"prompt_id": "p"}}, now=10.0)
    ws.handle_message({"type": "progress", "data": {"value": 1, "max": 9, "prompt_id": "p", "node": "3"}}, now=11.0)
    ws.handle_message({"type": "progress", "data": {"value": 2, "max": 9, "prompt_id": "p", "node": "3"}}, now=11.25)
    assert seen[-1] == Progress("p", 2, 9, 4.0, 1.8)


async def test_connect_status_reports_an_empty_queue(ws: ComfyWebsocket) -> None:
    seen: list[int] = []
    ws.on_queue.append(seen.append)
    for name in ("ws_connect_with_client_id.jsonl", "ws_connect_without_client_id.jsonl", "ws_feature_flags.jsonl"):
        replay(ws, name)
    assert seen == [0, 0, 0]


async def test_foreign_prompt_progress_is_shown_but_not_tracked(ws: ComfyWebsocket) -> None:
    seen: list[Progress | None] = []
    ws.on_progress.append(seen.append)
    messages = replay(ws, "ws_messages_prompt_without_client_id.jsonl")
    pid = prompt_ids(messages)[0]
    assert ws.outcome(pid) is None
    assert Progress(pid, 1, 1) in seen
    assert seen[-1] is None  # queue_remaining 0 ends the bar


async def test_reconnect_executing_without_prompt_id_belongs_to_the_running_prompt(ws: ComfyWebsocket) -> None:
    old = replay(ws, "ws_reconnect_during_run_old_socket.jsonl")
    pid = prompt_ids(old)[0]
    queues: list[int] = []
    ws.on_queue.append(queues.append)
    replay(ws, "ws_reconnect_during_run.jsonl")
    assert queues == [1]  # the new socket's status message was taken in
    assert ws.active_prompt == pid
    assert ws.outcome(pid) is None  # still running: no outcome invented


async def test_reconnect_executing_without_known_prompt_is_ignored(ws: ComfyWebsocket) -> None:
    replay(ws, "ws_reconnect_during_run.jsonl")
    assert ws.active_prompt is None


async def test_messages_of_a_prompt_are_kept_for_a_late_waiter(ws: ComfyWebsocket) -> None:
    messages = replay(ws, "ws_messages_success.jsonl")
    result = await ws.wait(prompt_ids(messages)[0], timeout=1)
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]


async def test_finished_prompts_nobody_waits_for_are_bounded(ws: ComfyWebsocket) -> None:
    messages = jsonl("ws_messages_cached.jsonl")
    (old_id,) = prompt_ids(messages)
    ids = [f"p{i}" for i in range(MAX_TRACKED * 2)]
    for pid in ids:
        for m in json.loads(json.dumps(messages).replace(old_id, pid)):
            ws.handle_message(m)
    kept = [pid for pid in ids if ws.outcome(pid) is not None]
    assert kept == ids[-MAX_TRACKED:]  # the newest are still there for a late wait()


async def test_a_failing_listener_does_not_stop_the_others(ws: ComfyWebsocket) -> None:
    seen: list[int] = []

    def broken(_: int) -> None:
        raise RuntimeError("listener bug")

    ws.on_queue.extend([broken, seen.append])
    replay(ws, "ws_connect_with_client_id.jsonl")
    assert seen == [0]


@pytest.mark.parametrize("junk", ["not json", "[]", '{"type": "status"}', '{"type": 5, "data": {}}', '{"data": []}'])
async def test_malformed_text_frames_are_ignored(ws: ComfyWebsocket, junk: str) -> None:
    ws.handle_text(junk)
    assert ws.active_prompt is None and ws.queue_remaining is None


# -- history -------------------------------------------------------------------------------------


def history_entry(name: str) -> tuple[str, dict[str, Any]]:
    ((pid, entry),) = load(name).items()
    return pid, entry


@pytest.mark.parametrize("name", ["history_done.json", "history_cached.json"])
def test_history_success_has_the_saved_image(name: str) -> None:
    pid, entry = history_entry(name)
    result = result_from_history(pid, entry)
    assert isinstance(result, RunResult)
    assert result.images == [ImageRef("ComfyUI_00013_.png", "", "output")]


def test_history_tells_cached_from_rendered() -> None:
    done = result_from_history(*history_entry("history_done.json"))
    cached = result_from_history(*history_entry("history_cached.json"))
    assert isinstance(done, RunResult) and isinstance(cached, RunResult)
    assert (done.cached, cached.cached) == (False, True)
    assert done.timings["exec_s"] == pytest.approx(0.866)


def test_history_img2img_prefers_saved_over_preview() -> None:
    result = result_from_history(*history_entry("history_img2img.json"))
    assert isinstance(result, RunResult)
    assert result.images == [ImageRef("i2i_00001_.png", "", "output")]


@pytest.mark.parametrize(
    "name", ["history_save_image_websocket.json", "history_save_image_websocket_metadata.json"]
)
def test_history_websocket_output_succeeds_without_images(name: str) -> None:
    result = result_from_history(*history_entry(name))
    assert isinstance(result, RunResult) and result.images == []


@pytest.mark.parametrize(
    ("name", "exception_type"),
    [("history_error.json", "RuntimeError"), ("history_error_loadimage.json", "PIL.UnidentifiedImageError")],
)
def test_history_error_is_an_execution_failure(name: str, exception_type: str) -> None:
    result = result_from_history(*history_entry(name))
    assert isinstance(result, ComfyExecutionFailed)
    assert result.exception_type == exception_type


def test_history_interrupted_is_an_interruption() -> None:
    result = result_from_history(*history_entry("history_interrupted.json"))
    assert isinstance(result, ComfyInterrupted)
    assert result.node_type == "KSampler"


@pytest.mark.parametrize(
    "name", ["history_while_running.json", "history_unknown_id.json", "history_deleted_from_queue.json"]
)
def test_empty_history_means_no_answer_yet(name: str) -> None:
    assert load(name) == {}
    assert result_from_history("any", load(name).get("any")) is None


# -- POST /prompt rejections, queue, system_stats ---------------------------------------------


REJECTIONS = sorted(
    p.name for p in CAPTURES.glob("prompt_error_*.json") if json.loads(p.read_text())["status"] == 400
)


@pytest.mark.parametrize("name", REJECTIONS)
def test_every_recorded_rejection_keeps_comfyuis_error(name: str) -> None:
    body = load(name)["response"]
    err = ComfyRejected(body["error"], body["node_errors"])
    api = err.to_api_error()
    assert (api.status, api.code) == (502, "image.upstream_failed")
    assert body["error"]["message"] in api.message
    assert api.details["comfyui"] == {"error": body["error"], "node_errors": body["node_errors"]}


def test_rejection_message_names_the_first_failing_node() -> None:
    body = load("prompt_error_bad_ckpt_name.json")["response"]
    message = ComfyRejected(body["error"], body["node_errors"]).message
    assert message.startswith("Prompt outputs failed validation; node 4 (CheckpointLoaderSimple): Value not in list")
    assert "'nope.safetensors' not in" in message


def test_rejection_message_keeps_comfyuis_details() -> None:
    body = load("prompt_error_unknown_node.json")["response"]
    message = ComfyRejected(body["error"], body["node_errors"]).message
    assert message == "Cannot execute because node NoSuchNode does not exist. (Node ID '#10')"


def test_queue_items_give_running_and_pending_ids() -> None:
    body = load("queue_busy.json")
    assert _queue_ids(body["queue_running"]) == ("173d38fe-d976-4c4d-a8e4-74fcc4b7bc71",)
    assert _queue_ids(body["queue_pending"]) == (
        "7179e62a-46ff-446b-bdb5-e4ee6d697a5e",
        "c22cce3c-1124-4e50-bf55-0e1eab6daeb5",
    )


def test_memory_from_system_stats_uses_comfyuis_device() -> None:
    stats = load("system_stats.json")
    memory = memory_from(stats, None)
    assert memory.gtt_source == "comfyui"
    assert memory.gtt_total == 25276510208 and memory.gtt_used == 25276510208 - 24012574720
    assert memory.ram_total == 25276510208 and memory.ram_used == 25276510208 - 24012574720


def test_memory_prefers_sysfs_gtt_but_keeps_comfyuis_ram() -> None:
    memory = memory_from(load("system_stats.json"), GttReading(used=5, total=10, card="card1"))
    assert (memory.gtt_used, memory.gtt_total, memory.gtt_source) == (5, 10, "sysfs")
    assert memory.ram_total == 25276510208
