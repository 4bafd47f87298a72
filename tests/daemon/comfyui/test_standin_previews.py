"""Latent previews on the stand-in (``preview_method``), framed as ComfyUI 0.3.64 sends them.

Recorded with ``--preview-method latent2rgb``: ws_messages_preview_latent2rgb.jsonl (a socket that
sent no feature flags: event 1 frames, JPEG, after each ``progress``) and
ws_messages_preview_latent2rgb_metadata.jsonl (a socket that asked for metadata: event 4 frames
before each ``progress``). The README's "Websocket files" section gives the layout.
"""

from __future__ import annotations

import io

import aiohttp
import pytest
from PIL import Image as PILImage

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.standin_client import (
    capture,
    connect,
    example_body,
    read_until,
    run,
    summary,
)

# SD1.5, 256x256, 3 steps (_index.json for both preview captures)
PREVIEW_RUN = {"width": 256, "height": 256, "steps": 3}


@pytest.fixture
async def comfy():
    async with ComfyStandIn(preview_method="latent2rgb") as standin:
        yield standin


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


def frames(messages: list[dict]) -> list[dict]:
    return [m for m in messages if m.get("binary")]


async def test_first_run_sequence_matches_capture(comfy, session):
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, example_body(**PREVIEW_RUN))
    assert summary(messages) == summary(capture("ws_messages_preview_latent2rgb.jsonl"))


async def test_frames_are_event_1_jpegs_of_the_recorded_kind(comfy, session):
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, example_body(**PREVIEW_RUN))
    recorded = frames(capture("ws_messages_preview_latent2rgb.jsonl"))
    got = frames(messages)
    assert [(f["event_type"], f["image_type"], f["payload_magic"]) for f in got] == [
        (r["event_type"], r["image_type"], r["payload_magic"]) for r in recorded
    ]
    for frame, recorded_frame in zip(got, recorded):
        assert frame["bytes"] == len(frame["image"]) + 8  # [event][image type][JPEG]
        assert 0.5 < len(frame["image"]) / recorded_frame["image_bytes"] < 2
        with PILImage.open(io.BytesIO(frame["image"])) as image:
            # a 32x32 latent shown at --preview-size 512 (server.send_image: ImageOps.contain)
            assert (image.format, image.size) == ("JPEG", (512, 512))


async def test_metadata_socket_sequence_matches_capture(comfy, session):
    ws = await connect(session, comfy, metadata=True)
    await run(session, comfy, ws, example_body(seed=1, **PREVIEW_RUN))
    prompt_id, messages = await run(session, comfy, ws, example_body(seed=2, **PREVIEW_RUN))
    recorded = capture("ws_messages_preview_latent2rgb_metadata.jsonl")
    assert summary(messages) == summary(recorded)
    for frame, recorded_frame in zip(frames(messages), frames(recorded)):
        assert frame["metadata"] == {**recorded_frame["metadata"], "prompt_id": prompt_id}
        assert frame["metadata_length"] == recorded_frame["metadata_length"]
        assert frame["payload_magic"] == recorded_frame["payload_magic"]


@pytest.mark.parametrize("method", ["auto", "taesd"])
async def test_auto_and_taesd_without_decoders_are_latent2rgb(session, method):
    async with ComfyStandIn(preview_method=method) as comfy:
        ws = await connect(session, comfy)
        _, messages = await run(session, comfy, ws, example_body(**PREVIEW_RUN))
    assert [(f["event_type"], f["image_type"]) for f in frames(messages)] == [(1, 1)] * 3


async def test_no_frames_with_the_default_method(session):
    async with ComfyStandIn() as comfy:
        ws = await connect(session, comfy)
        _, messages = await run(session, comfy, ws, example_body(**PREVIEW_RUN))
    assert frames(messages) == []
    assert summary(messages) == [s for s in summary(capture("ws_messages_preview_latent2rgb.jsonl")) if s[0] != "binary"]


async def test_preview_size_bounds_the_longer_side(session):
    async with ComfyStandIn(preview_method="latent2rgb", preview_size=256) as comfy:
        ws = await connect(session, comfy)
        _, messages = await run(session, comfy, ws, example_body(width=1024, height=768, steps=1))
    (frame,) = frames(messages)
    with PILImage.open(io.BytesIO(frame["image"])) as image:
        assert image.size == (256, 192)


async def test_one_frame_per_step_follows_each_progress(comfy, session):
    ws = await connect(session, comfy)
    _, messages = await run(session, comfy, ws, example_body(steps=5))
    after_progress = [messages[i + 1].get("binary", False) for i, m in enumerate(messages) if m.get("type") == "progress"]
    assert after_progress == [True] * 5


async def test_prompt_without_client_id_sends_frames_to_every_socket(comfy, session):
    # main.hijack_progress sends to server.client_id, which is None for such a prompt: every socket.
    ws = await connect(session, comfy, "someoneelse")
    async with session.post(f"{comfy.url}/prompt", json=example_body(client_id=None, **PREVIEW_RUN)) as resp:
        assert resp.status == 200
    messages = await read_until(ws, lambda m: m.get("type") == "status" and m["data"]["status"]["exec_info"]["queue_remaining"] == 0)
    assert [(f["event_type"], f["image_type"]) for f in frames(messages)] == [(1, 1)] * 3


async def test_unknown_preview_method_is_refused(comfy, session):
    async with session.post(f"{comfy.url}/_standin/config", json={"preview_method": "fancy"}) as resp:
        assert resp.status == 400
    assert comfy.settings.preview_method == "latent2rgb"
