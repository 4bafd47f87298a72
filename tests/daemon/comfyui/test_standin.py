"""The ComfyUI stand-in matches the recordings in tests/captures/ (real ComfyUI 0.3.64).

Each test replays what a capture recorded and compares status codes, shapes and websocket
message sequences; ids, timestamps, file numbers and tracebacks are left out where they
differ by nature.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
from typing import Any

import aiohttp
import pytest
from PIL import Image as PILImage

from tests.support.comfyui_standin import SOURCE_NODES, ComfyStandIn, StandInProcess, free_port
from tests.support.png import make_png, png_size, png_text
from tests.support.standin_client import (
    CAPTURES,
    CLIENT,
    capture,
    connect,
    example_body,
    get_json,
    is_end,
    read_until,
    receive,
    run,
    submit,
)


def summary(messages: list[dict]) -> list[tuple]:
    """What a message sequence says, without ids, timestamps and file names."""
    out: list[tuple] = []
    for message in messages:
        if message.get("binary"):
            out.append(("binary", message["event_type"]))
            continue
        kind, data = message["type"], message["data"]
        if kind == "status":
            out.append((kind, data["status"]["exec_info"]["queue_remaining"]))
        elif kind == "executing":
            out.append((kind, data["node"]))
        elif kind == "executed":
            out.append((kind, data["node"], tuple(sorted(data["output"] or {}))))
        elif kind == "execution_cached":
            out.append((kind, tuple(data["nodes"])))
        elif kind == "progress":
            out.append((kind, data["node"], data["value"], data["max"]))
        elif kind == "progress_state":
            out.append((kind, tuple((k, v["state"], v["value"], v["max"]) for k, v in data["nodes"].items())))
        elif kind in ("execution_error", "execution_interrupted"):
            out.append((kind, data["node_id"], data["node_type"], tuple(data["executed"])))
        else:
            out.append((kind,))
    return out


def without_progress(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("type") not in ("progress", "progress_state")]


async def remaining_messages(comfy: ComfyStandIn, ws: aiohttp.ClientWebSocketResponse) -> list[dict]:
    """Everything the socket still gets once the stand-in is idle (server closes all sockets)."""
    await comfy.wait_idle()
    await comfy.drop_websockets()
    messages = []
    while (message := await receive(ws)) is not None:
        messages.append(message)
    return messages


@pytest.fixture
async def comfy():
    async with ComfyStandIn() as standin:
        yield standin


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


# --------------------------------------------------------------------------- validation


ERROR_CAPTURES = sorted(p.name for p in CAPTURES.glob("prompt_error_*.json"))


def _strip_tracebacks(body: Any) -> Any:
    if isinstance(body, dict):
        for entry in body.get("node_errors", {}).values():
            for error in entry["errors"]:
                error["extra_info"].pop("traceback", None)
    return body


@pytest.mark.parametrize("name", ERROR_CAPTURES)
async def test_rejected_prompt_matches_capture(comfy, session, name):
    recorded = capture(name)
    request = recorded["request"]
    data = json.dumps(request["body"]) if "body" in request else request["raw_body"]
    async with session.post(f"{comfy.url}/prompt", data=data) as resp:
        assert resp.status == recorded["status"]
        assert resp.headers["Content-Type"] == recorded["content_type"]
        body = await resp.json() if resp.status == 400 else await resp.text()
    assert _strip_tracebacks(body) == _strip_tracebacks(recorded["response"])


async def test_inner_validation_error_carries_a_traceback_list(comfy, session):
    recorded = capture("prompt_error_link_to_missing_node.json")
    async with session.post(f"{comfy.url}/prompt", json=recorded["request"]["body"]) as resp:
        body = await resp.json()
    traceback = body["node_errors"]["8"]["errors"][0]["extra_info"]["traceback"]
    assert traceback and all(isinstance(line, str) for line in traceback)


async def test_accepted_prompt_answers_like_capture(comfy, session):
    async with session.post(f"{comfy.url}/prompt", json=example_body()) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        body = await resp.json()
    assert body == {"prompt_id": body["prompt_id"], "number": 0, "node_errors": {}}


async def test_number_counts_rejected_prompts_and_front_is_negative(comfy, session):
    numbers = []
    for body in (example_body(), {"client_id": CLIENT}, example_body(seed=2), {**example_body(seed=3), "front": True}):
        async with session.post(f"{comfy.url}/prompt", json=body) as resp:
            numbers.append((await resp.json()).get("number"))
    assert numbers == [0, None, 2, -3]


async def test_client_chosen_prompt_id_is_used(comfy, session):
    body = capture("prompt_ok_client_prompt_id.json")["request"]["body"]
    async with session.post(f"{comfy.url}/prompt", json=body) as resp:
        assert (await resp.json())["prompt_id"] == "11111111-2222-3333-4444-555555555555"


async def test_checkpoint_list_comes_from_settings(session):
    async with ComfyStandIn(checkpoints=["mine.safetensors"]) as comfy:
        async with session.post(f"{comfy.url}/prompt", json=example_body()) as resp:
            assert resp.status == 400
            error = (await resp.json())["node_errors"]["4"]["errors"][0]
    assert error["details"] == "ckpt_name: 'v1-5-pruned-emaonly.safetensors' not in ['mine.safetensors']"


# --------------------------------------------------------------------------- websocket sequences


async def test_first_message_is_status_with_the_client_id_as_sid(comfy, session):
    ws = await session.ws_connect(comfy.ws_url(CLIENT))
    assert await receive(ws) == capture("ws_connect_with_client_id.jsonl")[0]


async def test_socket_without_client_id_gets_a_new_hex_sid(comfy, session):
    ws = await session.ws_connect(comfy.ws_url())
    message = await receive(ws)
    recorded = capture("ws_connect_without_client_id.jsonl")[0]
    assert message["data"]["status"] == recorded["data"]["status"]
    assert len(message["data"]["sid"]) == 32 and int(message["data"]["sid"], 16) >= 0


async def test_feature_flags_are_answered_when_sent_first(comfy, session):
    ws = await session.ws_connect(comfy.ws_url("a268507fc520411abef6d0726bd0754e"))
    await receive(ws)
    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    assert await receive(ws) == capture("ws_feature_flags.jsonl")[1]


async def test_first_run_sequence_matches_capture(comfy, session):
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, example_body())
    assert summary(messages) == summary(capture("ws_messages_success.jsonl"))


async def test_identical_prompt_is_answered_from_cache(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())
    _, messages = await run(session, comfy, ws, example_body())
    assert summary(messages) == summary(capture("ws_messages_cached.jsonl"))


async def test_cached_run_reports_the_first_runs_file(comfy, session):
    ws = await connect(session, comfy)
    first_id, _ = await run(session, comfy, ws, example_body())
    second_id, _ = await run(session, comfy, ws, example_body())
    history = await get_json(session, f"{comfy.url}/history")
    assert history[second_id]["outputs"] == history[first_id]["outputs"]


async def test_changed_seed_reuses_loader_and_text_encodes(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())
    _, messages = await run(session, comfy, ws, example_body(seed=43))
    assert summary(messages) == summary(capture("ws_messages_partial_cache.jsonl"))


async def test_ten_steps_send_progress_one_to_ten(comfy, session):
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, example_body(steps=10, width=512, height=512))
    progress = [(m["data"]["value"], m["data"]["max"]) for m in messages if m["type"] == "progress"]
    assert progress == [(step, 10) for step in range(1, 11)]


async def test_ten_step_run_matches_capture_with_warm_latent(comfy, session):
    ws = await connect(session, comfy)
    # The recorded run followed an SDXL run at 512x512: only the empty latent was cached.
    warm_up = example_body(width=512, height=512, text="warm-up", ckpt_name="sd_xl_turbo_1.0_fp16.safetensors")
    await run(session, comfy, ws, warm_up)
    _, messages = await run(session, comfy, ws, example_body(steps=10, width=512, height=512))
    assert summary(messages) == summary(capture("ws_messages_success_10_steps.jsonl"))


async def test_runtime_failure_matches_capture(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())  # warms the checkpoint loader, cached as "1" below
    prompt_id, messages = await run(session, comfy, ws, capture("prompt_ok_for_failing_job.json")["request"]["body"])
    recorded = capture("ws_messages_error.jsonl")
    assert summary(messages) == summary(recorded)
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    recorded_error = next(m["data"] for m in recorded if m["type"] == "execution_error")
    assert list(error) == list(recorded_error)
    assert error["exception_message"] == recorded_error["exception_message"]
    assert sorted(error["current_outputs"]) == sorted(recorded_error["current_outputs"])


async def test_failed_run_history_matches_capture(comfy, session):
    ws = await connect(session, comfy)
    prompt_id, _ = await run(session, comfy, ws, capture("prompt_ok_for_failing_job.json")["request"]["body"])
    entry = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]
    recorded = next(iter(capture("history_error.json").values()))
    assert entry["outputs"] == recorded["outputs"] == {}
    assert {k: v for k, v in entry["status"].items() if k != "messages"} == {"status_str": "error", "completed": False}
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in recorded["status"]["messages"]]


async def test_injected_failure_fails_only_the_next_prompt(comfy, session):
    comfy.settings.fail_next_prompts = 1
    ws = await connect(session, comfy)
    _, failed = await run(session, comfy, ws, example_body())
    _, passed = await run(session, comfy, ws, example_body(seed=7))
    error = next(m["data"] for m in failed if m["type"] == "execution_error")
    assert (error["node_type"], error["exception_type"]) == ("VAEDecode", "RuntimeError")
    assert [m["type"] for m in passed if m["type"].startswith("execution_")][-1] == "execution_success"


async def test_injected_failure_sequence_has_no_success_and_no_executed(comfy, session):
    comfy.settings.fail_next_prompts = 1
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, example_body())
    kinds = [m["type"] for m in messages]
    assert "execution_success" not in kinds and "executed" not in kinds
    assert kinds[-4:] == ["executing", "execution_error", "status", "executing"]


async def test_interrupt_sequence_matches_capture(comfy, session):
    """A running, B+C queued, C deleted, A interrupted by id, then B interrupted globally."""
    comfy.settings.step_seconds = 0.05
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body(text="warm-up", steps=1))
    a_id = await submit(session, comfy, example_body(seed=999, steps=200, width=512, height=512))
    messages = await read_until(ws, lambda m: m["type"] == "progress")
    await submit(session, comfy, example_body(seed=1001, steps=200, width=512, height=512))
    c_id = await submit(session, comfy, example_body(seed=1002, steps=1))
    async with session.post(f"{comfy.url}/queue", json={"delete": [c_id]}) as resp:
        assert resp.status == 200
    async with session.post(f"{comfy.url}/interrupt", json={"prompt_id": a_id}) as resp:
        assert resp.status == 200
    messages += await read_until(ws, lambda m: m["type"] == "progress")
    async with session.post(f"{comfy.url}/interrupt") as resp:
        assert resp.status == 200
    messages += await read_until(ws, lambda m: is_end(m) and m["data"]["prompt_id"] != a_id)
    recorded = capture("ws_messages_interrupted.jsonl")
    assert summary(without_progress(messages)) == summary(without_progress(recorded))


async def test_interrupted_history_matches_capture(comfy, session):
    comfy.settings.step_seconds = 0.05
    ws = await connect(session, comfy)
    prompt_id = await submit(session, comfy, example_body(steps=200))
    await read_until(ws, lambda m: m["type"] == "progress")
    async with session.post(f"{comfy.url}/interrupt", json={"prompt_id": prompt_id}):
        pass
    await read_until(ws, is_end)
    entry = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]
    recorded = next(iter(capture("history_interrupted.json").values()))
    assert (entry["outputs"], entry["meta"]) == (recorded["outputs"], recorded["meta"]) == ({}, {})
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


async def test_interrupt_naming_a_pending_prompt_does_nothing(comfy, session):
    comfy.settings.step_seconds = 0.05
    ws = await connect(session, comfy)
    await submit(session, comfy, example_body(steps=20))
    await read_until(ws, lambda m: m["type"] == "progress")
    pending_id = await submit(session, comfy, example_body(seed=5, steps=1))
    async with session.post(f"{comfy.url}/interrupt", json={"prompt_id": pending_id}) as resp:
        assert (resp.status, await resp.read()) == (200, b"")
    messages = await read_until(ws, lambda m: is_end(m) and m["data"]["prompt_id"] == pending_id)
    assert [m["type"] for m in messages].count("execution_success") == 2


async def test_interrupt_while_idle_is_forgotten(comfy, session):
    async with session.post(f"{comfy.url}/interrupt") as resp:
        assert (resp.status, resp.headers.get("Content-Type"), await resp.read()) == (200, None, b"")
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, example_body())
    assert "execution_success" in [m["type"] for m in messages]


# --------------------------------------------------------------------------- who receives what


async def test_prompt_messages_go_only_to_its_client(comfy, session):
    mine = await connect(session, comfy)
    other = await connect(session, comfy, "someoneelse")
    await run(session, comfy, mine, example_body())
    others = await remaining_messages(comfy, other)
    assert {m["type"] for m in others} == {"status"}


async def test_prompt_without_client_id_broadcasts_only_progress_and_status(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())
    observer = await connect(session, comfy, "b37dde3efd6c413a9ca161c078d83d68")
    await submit(session, comfy, example_body(client_id=None, seed=44))
    messages = await remaining_messages(comfy, observer)
    assert summary(messages) == summary(capture("ws_messages_prompt_without_client_id.jsonl"))


async def test_reconnect_with_same_client_id_gets_status_then_current_node(comfy, session):
    comfy.settings.step_seconds = 0.05
    old = await connect(session, comfy, "b37dde3efd6c413a9ca161c078d83d68")
    await submit(session, comfy, example_body("b37dde3efd6c413a9ca161c078d83d68", steps=100))
    await read_until(old, lambda m: m["type"] == "progress")
    new = await session.ws_connect(comfy.ws_url("b37dde3efd6c413a9ca161c078d83d68"))
    first_two = [await receive(new), await receive(new)]
    assert first_two == capture("ws_reconnect_during_run.jsonl")
    comfy.interrupt()


async def test_replaced_socket_gets_nothing_more(comfy, session):
    client_id = "b37dde3efd6c413a9ca161c078d83d68"
    comfy.settings.step_seconds = 0.05
    old = await connect(session, comfy, client_id)
    await submit(session, comfy, example_body(client_id, steps=100))
    await read_until(old, lambda m: m["type"] == "progress")
    new = await connect(session, comfy, client_id)
    comfy.interrupt()
    await read_until(new, is_end)
    # Steps sent before the replacement may still be unread; nothing after it arrives.
    leftovers = {m["type"] for m in await remaining_messages(comfy, old)}
    assert leftovers <= {"progress", "progress_state"}


async def test_save_image_websocket_sends_png_frame_and_no_executed(comfy, session):
    ws = await connect(session, comfy, "61b8c56ab7674a47befddaa22705403a")
    body = capture("prompt_request_save_image_websocket.json")
    prompt_id, messages = await run(session, comfy, ws, body)
    frame = next(m for m in messages if m.get("binary"))
    assert (frame["event_type"], frame["image_type"], png_size(frame["image"])) == (1, 2, (64, 64))
    assert "executed" not in [m.get("type") for m in messages]
    assert (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]["outputs"] == {}


async def test_save_image_websocket_sequence_matches_capture(comfy, session):
    ws = await connect(session, comfy, "61b8c56ab7674a47befddaa22705403a")
    body = capture("prompt_request_save_image_websocket.json")
    warm = copy.deepcopy(body)
    warm["prompt"]["3"]["inputs"]["seed"] = 1
    await run(session, comfy, ws, warm)
    _, messages = await run(session, comfy, ws, body)
    assert summary(messages) == summary(capture("ws_messages_save_image_websocket.jsonl"))


async def test_preview_metadata_client_gets_event_4_frame(comfy, session):
    client_id = "61b8c56ab7674a47befddaa22705403a"
    ws = await connect(session, comfy, client_id)
    await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    await receive(ws)
    prompt_id, messages = await run(session, comfy, ws, capture("prompt_request_save_image_websocket.json"))
    frame = next(m for m in messages if m.get("binary"))
    recorded = next(m for m in capture("ws_messages_save_image_websocket_metadata.jsonl") if m.get("binary"))
    assert frame["event_type"] == 4
    assert frame["metadata"] == {**recorded["metadata"], "prompt_id": prompt_id}


async def test_img2img_runs_nodes_in_recorded_order(comfy, session):
    (comfy.input_dir / "red.png").write_bytes(make_png(32, 32, 1))
    ws = await connect(session, comfy)
    prompt_id, messages = await run(session, comfy, ws, capture("prompt_request_img2img.json"))
    order = [m["data"]["node"] for m in messages if m["type"] == "executing"]
    recorded = [m["data"]["node"] for m in capture("ws_messages_img2img.jsonl") if m["type"] == "executing"]
    assert order == recorded


async def test_img2img_history_has_output_and_temp_images(comfy, session):
    (comfy.input_dir / "red.png").write_bytes(make_png(32, 32, 1))
    ws = await connect(session, comfy)
    prompt_id, _ = await run(session, comfy, ws, capture("prompt_request_img2img.json"))
    outputs = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]["outputs"]
    assert outputs["10"]["images"][0]["filename"] == "i2i_00001_.png"
    assert outputs["11"]["images"][0]["type"] == "temp"
    assert outputs["11"]["images"][0]["filename"].startswith("ComfyUI_temp_")


async def test_load_image_of_a_non_image_fails_at_run_time(comfy, session):
    (comfy.input_dir / "corrupt.png").write_bytes(b"not an image")
    body = copy.deepcopy(capture("prompt_request_img2img.json"))
    body["prompt"]["2"]["inputs"]["image"] = "corrupt.png"
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, body)
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    assert (error["node_type"], error["exception_type"]) == ("LoadImage", "PIL.UnidentifiedImageError")


# --------------------------------------------------------------------------- queue and history


async def test_queue_lists_running_and_pending_as_arrays(comfy, session):
    comfy.settings.step_seconds = 0.05
    ws = await connect(session, comfy)
    ids = [await submit(session, comfy, example_body(seed=s, steps=200)) for s in (999, 1001, 1002)]
    await read_until(ws, lambda m: m["type"] == "executing")
    queue = await get_json(session, f"{comfy.url}/queue")
    remaining = await get_json(session, f"{comfy.url}/prompt")
    async with session.post(f"{comfy.url}/queue", json={"clear": True}):
        pass
    comfy.interrupt()
    recorded = capture("queue_busy.json")
    assert [len(queue["queue_running"]), len(queue["queue_pending"])] == [1, 2]
    assert [item[1] for item in queue["queue_running"] + queue["queue_pending"]] == ids
    assert [len(item) for item in queue["queue_pending"]] == [len(recorded["queue_pending"][0])] * 2
    assert queue["queue_running"][0][3:] == [{"client_id": CLIENT}, ["9"]] == recorded["queue_running"][0][3:]
    assert remaining == capture("prompt_get_busy.json")


async def test_queue_clear_keeps_the_running_job(comfy, session):
    comfy.settings.step_seconds = 0.05
    ws = await connect(session, comfy)
    running = await submit(session, comfy, example_body(steps=200))
    await submit(session, comfy, example_body(seed=2))
    await read_until(ws, lambda m: m["type"] == "executing")
    async with session.post(f"{comfy.url}/queue", json={"clear": True}) as resp:
        assert (resp.status, await resp.read()) == (200, b"")
    queue = await get_json(session, f"{comfy.url}/queue")
    comfy.interrupt()
    assert ([i[1] for i in queue["queue_running"]], queue["queue_pending"]) == ([running], [])


async def test_deleted_pending_prompt_never_reaches_history(comfy, session):
    comfy.settings.step_seconds = 0.05
    ws = await connect(session, comfy)
    await submit(session, comfy, example_body(steps=200))
    await read_until(ws, lambda m: m["type"] == "executing")
    deleted = await submit(session, comfy, example_body(seed=2))
    async with session.post(f"{comfy.url}/queue", json={"delete": [deleted]}) as resp:
        assert resp.status == 200
    comfy.interrupt()
    await comfy.wait_idle()
    assert await get_json(session, f"{comfy.url}/history/{deleted}") == capture("history_deleted_from_queue.json")


async def test_history_is_empty_while_the_prompt_runs(comfy, session):
    comfy.settings.step_seconds = 0.05
    ws = await connect(session, comfy)
    prompt_id = await submit(session, comfy, example_body(steps=100))
    await read_until(ws, lambda m: m["type"] == "progress")
    during = await get_json(session, f"{comfy.url}/history/{prompt_id}")
    comfy.interrupt()
    assert during == capture("history_while_running.json") == {}


async def test_history_entry_has_recorded_shape(comfy, session):
    ws = await connect(session, comfy)
    prompt_id, _ = await run(session, comfy, ws, example_body())
    entry = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]
    recorded = capture("history_done.json")["da183921-c8d5-409c-9a66-aa91ec5ed33f"]
    assert list(entry) == list(recorded)
    assert entry["prompt"][2:] == recorded["prompt"][2:]
    assert entry["outputs"] == {"9": {"images": [{"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}]}}
    assert entry["meta"] == recorded["meta"]
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in recorded["status"]["messages"]]


async def test_unknown_history_id_is_empty_object(comfy, session):
    url = f"{comfy.url}/history/00000000-0000-0000-0000-000000000000"
    assert await get_json(session, url) == capture("history_unknown_id.json")


async def test_history_max_items_and_offset(comfy, session):
    ws = await connect(session, comfy)
    ids = [(await run(session, comfy, ws, example_body(seed=s)))[0] for s in range(4)]
    newest = await get_json(session, f"{comfy.url}/history?max_items=2")
    paged = await get_json(session, f"{comfy.url}/history?max_items=2&offset=1")
    assert (list(newest), list(paged)) == (ids[2:], ids[1:3])


async def test_history_delete_and_clear(comfy, session):
    ws = await connect(session, comfy)
    first, _ = await run(session, comfy, ws, example_body(seed=1))
    await run(session, comfy, ws, example_body(seed=2))
    async with session.post(f"{comfy.url}/history", json={"delete": [first]}) as resp:
        assert (resp.status, await resp.read()) == (200, b"")
    after_delete = await get_json(session, f"{comfy.url}/history/{first}")
    async with session.post(f"{comfy.url}/history", json={"clear": True}) as resp:
        assert resp.status == 200
    assert (after_delete, await get_json(session, f"{comfy.url}/history")) == ({}, {})


# --------------------------------------------------------------------------- images and /view


async def test_batch_makes_one_png_per_image_of_requested_size(comfy, session):
    ws = await connect(session, comfy)
    body = example_body(width=1024, height=768, batch_size=3)
    prompt_id, _ = await run(session, comfy, ws, body)
    images = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]["outputs"]["9"]["images"]
    assert [i["filename"] for i in images] == ["ComfyUI_00001_.png", "ComfyUI_00002_.png", "ComfyUI_00003_.png"]
    sizes = []
    for image in images:
        async with session.get(f"{comfy.url}/view", params=image) as resp:
            sizes.append(PILImage.open(io.BytesIO(await resp.read())).size)
    assert sizes == [(1024, 768)] * 3


async def test_file_counter_continues_per_prefix(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body(seed=1))
    await run(session, comfy, ws, example_body(seed=2, filename_prefix="other"))
    prompt_id, _ = await run(session, comfy, ws, example_body(seed=3))
    images = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]["outputs"]["9"]["images"]
    assert images[0]["filename"] == "ComfyUI_00002_.png"


async def test_prefix_with_folder_saves_into_subfolder(comfy, session):
    ws = await connect(session, comfy)
    prompt_id, _ = await run(session, comfy, ws, example_body(filename_prefix="hal0/img"))
    image = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]["outputs"]["9"]["images"][0]
    assert image == {"filename": "img_00001_.png", "subfolder": "hal0", "type": "output"}
    assert (comfy.output_dir / "hal0" / "img_00001_.png").is_file()


async def test_saved_png_carries_prompt_and_workflow_text(comfy, session):
    body = capture("prompt_ok_client_prompt_id.json")["request"]["body"]
    ws = await connect(session, comfy)
    await run(session, comfy, ws, body)
    text = png_text((comfy.output_dir / "ComfyUI_00001_.png").read_bytes())
    assert json.loads(text["prompt"]) == body["prompt"]
    assert json.loads(text["workflow"]) == body["extra_data"]["extra_pnginfo"]["workflow"]


async def test_partial_execution_targets_run_only_the_named_output(comfy, session):
    body = capture("prompt_error_multiple_nodes.json")["request"]["body"]
    body["prompt"]["3"]["inputs"]["steps"] = 1
    body["prompt"]["5"]["inputs"]["width"] = 64
    ws = await connect(session, comfy)
    prompt_id, _ = await run(session, comfy, ws, {**body, "partial_execution_targets": ["9b"]})
    outputs = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]["outputs"]
    assert list(outputs) == ["9b"]


async def test_view_serves_png_with_recorded_headers(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())
    async with session.get(f"{comfy.url}/view?filename=ComfyUI_00001_.png&subfolder=&type=output") as resp:
        data = await resp.read()
        headers = resp.headers
    recorded = capture("view_response_headers.json")["headers"]
    assert resp.status == 200
    assert headers["Content-Type"] == recorded["Content-Type"]
    assert headers["Content-Disposition"] == 'filename="ComfyUI_00001_.png"'
    assert png_size(data) == (64, 64)


@pytest.mark.parametrize("name", ["view_missing_file.json", "view_path_traversal.json", "view_bad_type.json"])
async def test_view_refusals_match_capture(comfy, session, name):
    recorded = capture(name)
    async with session.get(comfy.url + recorded["request"]["path"]) as resp:
        assert (resp.status, await resp.read()) == (recorded["status"], b"")


# --------------------------------------------------------------------------- free, info routes


async def test_free_answers_empty_200_without_content_type(comfy, session):
    async with session.post(f"{comfy.url}/free", json={"unload_models": True, "free_memory": True}) as resp:
        assert (resp.status, resp.headers.get("Content-Type"), await resp.read()) == (200, None, b"")
    assert comfy.counters.free_calls == 1


async def test_free_with_non_json_body_is_plain_500(comfy, session):
    async with session.post(f"{comfy.url}/free", data="not json") as resp:
        assert resp.status == 500
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert await resp.text() == capture("prompt_error_empty_body.json")["response"]


async def test_free_500_fault_answers_plain_text_then_recovers(comfy, session):
    comfy.settings.free_500 = 1
    body = {"unload_models": True, "free_memory": True}
    async with session.post(f"{comfy.url}/free", json=body) as resp:
        assert (resp.status, await resp.text()) == (500, "500 Internal Server Error\n\nServer got itself in trouble")
    async with session.post(f"{comfy.url}/free", json=body) as resp:
        assert resp.status == 200
    assert comfy.counters.free_calls == 2


async def test_free_sends_no_websocket_message(comfy, session):
    ws = await connect(session, comfy)
    async with session.post(f"{comfy.url}/free", json={"unload_models": True, "free_memory": True}):
        pass
    assert await remaining_messages(comfy, ws) == capture("ws_messages_after_free.jsonl") == []


async def test_free_memory_drops_the_node_cache(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())
    async with session.post(f"{comfy.url}/free", json={"unload_models": True, "free_memory": True}):
        pass
    _, messages = await run(session, comfy, ws, example_body())
    assert summary(messages) == summary(capture("ws_messages_after_free_run.jsonl"))


async def test_unload_models_restores_reported_vram(comfy, session):
    comfy.settings.model_vram_bytes = 1000
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())
    loaded = (await get_json(session, f"{comfy.url}/system_stats"))["devices"][0]["vram_free"]
    async with session.post(f"{comfy.url}/free", json={"unload_models": True}):
        pass
    await comfy.wait_idle()
    while comfy.models_loaded:
        await asyncio.sleep(0.01)
    freed = (await get_json(session, f"{comfy.url}/system_stats"))["devices"][0]["vram_free"]
    assert freed - loaded == 1000


async def test_system_stats_reports_configured_memory(session):
    async with ComfyStandIn(vram_total=100, vram_free=60, ram_total=200, ram_free=50) as comfy:
        stats = await get_json(session, f"{comfy.url}/system_stats")
    recorded = capture("system_stats.json")
    assert stats["system"]["comfyui_version"] == recorded["system"]["comfyui_version"]
    assert (stats["devices"][0]["vram_total"], stats["devices"][0]["vram_free"]) == (100, 60)
    assert (stats["system"]["ram_total"], stats["system"]["ram_free"]) == (200, 50)


async def test_object_info_for_one_class_matches_capture(comfy, session):
    assert await get_json(session, f"{comfy.url}/object_info/KSampler") == capture("object_info_KSampler.json")


async def test_object_info_for_unknown_class_is_empty(comfy, session):
    assert await get_json(session, f"{comfy.url}/object_info/NoSuchNode") == capture("object_info_unknown_node.json")


async def test_object_info_lists_both_subsets(comfy, session):
    info = await get_json(session, f"{comfy.url}/object_info")
    expected = {**capture("object_info_core_subset.json"), **capture("object_info_extra_subset.json"), **SOURCE_NODES}
    assert sorted(info) == sorted(expected)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/models/checkpoints", "models_checkpoints.json"),
        ("/embeddings", "embeddings.json"),
        ("/features", "features.json"),
        ("/api/features", "features.json"),
        ("/api/system_stats", "system_stats.json"),
        ("/api/queue", "queue_idle.json"),
        ("/api/prompt", "prompt_get_idle.json"),
        ("/api/history", "history_empty.json"),
        ("/models", "models.json"),
    ],
)
async def test_read_only_route_matches_capture(comfy, session, path, name):
    async with session.get(comfy.url + path) as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (200, "application/json; charset=utf-8")
        assert await resp.json() == capture(name)


async def test_unknown_model_folder_is_empty_404(comfy, session):
    async with session.get(f"{comfy.url}/models/not_a_folder") as resp:
        assert (resp.status, await resp.read()) == (404, b"")


# --------------------------------------------------------------------------- faults and control


async def test_post_prompt_500_fault_answers_plain_text_then_recovers(comfy, session):
    comfy.settings.post_prompt_500 = 1
    async with session.post(f"{comfy.url}/prompt", json=example_body()) as resp:
        assert (resp.status, await resp.text()) == (500, "500 Internal Server Error\n\nServer got itself in trouble")
    async with session.post(f"{comfy.url}/prompt", json=example_body()) as resp:
        assert resp.status == 200


async def test_silent_websocket_sends_nothing_but_history_has_the_result(comfy, session):
    comfy.settings.ws_silent = True
    ws = await session.ws_connect(comfy.ws_url(CLIENT))
    prompt_id = await submit(session, comfy, example_body())
    messages = await remaining_messages(comfy, ws)
    entry = (await get_json(session, f"{comfy.url}/history/{prompt_id}"))[prompt_id]
    assert (messages, entry["status"]["status_str"]) == ([], "success")


async def test_rejected_websocket_upgrade_fails(comfy, session):
    comfy.settings.ws_reject = True
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await session.ws_connect(comfy.ws_url(CLIENT))


async def test_drop_websockets_closes_client_sockets(comfy, session):
    ws = await connect(session, comfy)
    async with session.post(f"{comfy.url}/_standin/drop_websockets") as resp:
        assert await resp.json() == {"dropped": 1}
    assert await receive(ws) is None


async def test_system_stats_delay_outlasts_a_short_client_timeout(comfy, session):
    comfy.settings.system_stats_delay_seconds = 30
    with pytest.raises(TimeoutError):
        async with session.get(f"{comfy.url}/system_stats", timeout=aiohttp.ClientTimeout(total=0.2)):
            pass
    assert await get_json(session, f"{comfy.url}/queue") == capture("queue_idle.json")


async def test_http_delay_applies_to_comfy_routes_not_control(comfy, session):
    comfy.settings.http_delay_seconds = 30
    with pytest.raises(TimeoutError):
        async with session.get(f"{comfy.url}/queue", timeout=aiohttp.ClientTimeout(total=0.2)):
            pass
    assert (await get_json(session, f"{comfy.url}/_standin/state"))["settings"]["http_delay_seconds"] == 30


async def test_control_config_changes_settings(comfy, session):
    async with session.post(f"{comfy.url}/_standin/config", json={"fail_next_prompts": 2, "step_seconds": 0.5}) as resp:
        assert resp.status == 200
    assert (comfy.settings.fail_next_prompts, comfy.settings.step_seconds) == (2, 0.5)


async def test_control_config_rejects_unknown_setting_without_partial_change(comfy, session):
    async with session.post(f"{comfy.url}/_standin/config", json={"step_seconds": 1.0, "nope": 1}) as resp:
        assert resp.status == 400
    assert comfy.settings.step_seconds == 0.0


async def test_control_state_counts_requests(comfy, session):
    ws = await connect(session, comfy)
    await run(session, comfy, ws, example_body())
    async with session.post(f"{comfy.url}/interrupt"):
        pass
    async with session.post(f"{comfy.url}/free", json={"free_memory": True}):
        pass
    await get_json(session, f"{comfy.url}/history")
    counters = (await get_json(session, f"{comfy.url}/_standin/state"))["counters"]
    assert {k: counters[k] for k in ("prompts_submitted", "prompts_succeeded", "interrupt_calls", "free_calls", "history_requests")} == {
        "prompts_submitted": 1,
        "prompts_succeeded": 1,
        "interrupt_calls": 1,
        "free_calls": 1,
        "history_requests": 1,
    }
    assert counters["free_bodies"] == [{"free_memory": True}]


# --------------------------------------------------------------------------- as a process


async def test_process_prints_ready_serves_and_exits_cleanly_on_sigterm(session):
    process = StandInProcess()
    url = await process.start()
    try:
        stats = await get_json(session, f"{url}/system_stats")
    finally:
        code = await process.stop()
    assert (stats["system"]["comfyui_version"], code) == ("0.3.64", 0)


async def test_process_with_startup_delay_is_not_listening_before_ready(session):
    process = StandInProcess(port=free_port(), startup_delay=1.0)
    await process.start(wait_ready=False)
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(f"{process.url}/system_stats"):
                pass
        await process.wait_ready()
        state = await process.state()
    finally:
        await process.stop()
    assert state["queue_remaining"] == 0


async def test_process_is_configured_over_http(session):
    async with StandInProcess() as process:
        await process.configure(post_prompt_500=1)
        async with session.post(f"{process.url}/prompt", json=example_body()) as resp:
            status = resp.status
        counters = (await process.state())["counters"]
    assert (status, counters["prompts_submitted"]) == (500, 1)


async def test_process_takes_any_setting_from_the_command_line(session):
    async with StandInProcess(extra_args=["--set", "fail_next_prompts=2", "--set", "loras=[\"x.safetensors\"]"]) as process:
        state = await process.state()
    assert (state["settings"]["fail_next_prompts"], state["settings"]["loras"]) == (2, ["x.safetensors"])


# --------------------------------------------------------------------------- png helpers


def test_make_png_has_requested_size_and_decodes():
    data = make_png(300, 200, 5)
    assert png_size(data) == (300, 200) == PILImage.open(io.BytesIO(data)).size


def test_make_png_differs_by_seed():
    assert make_png(16, 16, 1) != make_png(16, 16, 2)


def test_png_size_rejects_non_png():
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + bytes(30))
