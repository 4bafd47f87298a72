"""Latent previews reach whoever follows their prompt: event 4 by its prompt id, event 1 by the prompt
of ours ComfyUI runs; nothing reaches a prompt nobody asked previews for, or one that has ended."""

from __future__ import annotations

import asyncio
from typing import Any

from hal0_bridge.comfyui.client import ComfyUIClient
from hal0_bridge.comfyui.facade import ComfyUI
from hal0_bridge.comfyui.previews import PreviewFrame
from hal0_bridge.comfyui.websocket import ComfyWebsocket
from hal0_bridge.config import build
from hal0_bridge.status import StatusHub

from tests.support.comfyui_standin import ComfyStandIn, preview_frame, preview_frame_with_metadata

JPEG = b"\xff\xd8\xff\xe0preview"
OURS, OTHER = "p-ours", "p-other"


def offline_socket() -> ComfyWebsocket:
    cfg = build({}).comfyui
    return ComfyWebsocket(ComfyUIClient(None, cfg, "cid"), cfg)


def started(ws: ComfyWebsocket, prompt_id: str) -> list[PreviewFrame]:
    got: list[PreviewFrame] = []
    ws.track(prompt_id).on_preview = got.append
    ws.handle_message({"type": "execution_start", "data": {"prompt_id": prompt_id}})
    return got


def meta(prompt_id: str) -> dict[str, Any]:
    return {"node_id": "3", "prompt_id": prompt_id, "display_node_id": "3", "parent_node_id": None,
            "real_node_id": "3", "image_type": "image/jpeg"}  # fmt: skip


def test_event_1_goes_to_the_running_prompt() -> None:
    ws = offline_socket()
    got = started(ws, OURS)
    ws.handle_binary(preview_frame(JPEG, 1))
    assert [(f.image, f.format) for f in got] == [(JPEG, "jpeg")]


def test_event_4_goes_to_its_own_prompt_even_when_another_runs() -> None:
    ws = offline_socket()
    ours = started(ws, OURS)
    other: list[PreviewFrame] = []
    ws.track(OTHER).on_preview = other.append
    ws.handle_binary(preview_frame_with_metadata(JPEG, meta(OTHER)))
    assert ours == [] and [f.prompt_id for f in other] == [OTHER]


def test_a_preview_of_an_unknown_prompt_is_dropped() -> None:
    ws = offline_socket()
    got = started(ws, OURS)
    ws.handle_binary(preview_frame_with_metadata(JPEG, meta("someone-elses")))
    assert got == []


def test_no_preview_after_the_prompt_ended() -> None:
    ws = offline_socket()
    got = started(ws, OURS)
    ws.handle_message({"type": "execution_success", "data": {"prompt_id": OURS}})
    ws.handle_binary(preview_frame_with_metadata(JPEG, meta(OURS)))
    ws.handle_binary(preview_frame(JPEG, 1))
    assert got == []


def test_a_failing_listener_does_not_stop_the_reader() -> None:
    ws = offline_socket()
    tracker = ws.track(OURS)
    tracker.on_preview = lambda frame: 1 / 0  # type: ignore[func-returns-value]
    ws.handle_message({"type": "execution_start", "data": {"prompt_id": OURS}})
    ws.handle_binary(preview_frame(JPEG, 1))  # logged, not raised
    image = {"filename": "a.png", "subfolder": "", "type": "temp"}
    ws.handle_message({"type": "executed", "data": {"prompt_id": OURS, "node": "9", "output": {"images": [image]}}})
    ws.handle_message({"type": "execution_success", "data": {"prompt_id": OURS}})
    # the messages after the failing listener were still read (an offline socket's word sends the
    # waiter to /history, so "ended" rather than an outcome)
    assert [i.filename for i in tracker.images] == ["a.png"] and tracker.ended


async def test_render_hands_every_step_preview_to_on_preview() -> None:
    """Against the stand-in: our socket asks for metadata first, so frames arrive as event 4."""
    async with ComfyStandIn(preview_method="latent2rgb") as standin:
        cfg = build({"comfyui": {"url": standin.url}}).comfyui
        comfy = ComfyUI(cfg, StatusHub())
        await comfy.start()
        try:
            for _ in range(200):
                if comfy.ws.connected:
                    break
                await asyncio.sleep(0.01)
            got: list[PreviewFrame] = []
            graph = {
                "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
                "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
                "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}},
                "3": {"class_type": "KSampler", "inputs": {
                    "seed": 1, "steps": 5, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                    "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0]}},
                "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
                "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "t", "images": ["8", 0]}},
            }  # fmt: skip
            result = await comfy.render(graph, on_preview=got.append)
        finally:
            await comfy.stop()
    assert len(got) == 5
    assert {f.prompt_id for f in got} == {result.prompt_id} and {f.format for f in got} == {"jpeg"}
    assert all(f.image.startswith(b"\xff\xd8") for f in got)
