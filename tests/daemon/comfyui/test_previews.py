"""ComfyUI's binary preview frames: both layouts parsed, anything else ignored (captures README)."""

from __future__ import annotations

import json
import struct

import pytest
from hal0_bridge.comfyui.previews import parse_frame

from tests.support.comfyui_standin import load_capture, preview_frame, preview_frame_with_metadata

JPEG = b"\xff\xd8\xff\xe0fake-jpeg"
PNG = b"\x89PNG\r\n\x1a\nfake"


def test_event_1_jpeg_has_no_prompt() -> None:
    frame = parse_frame(preview_frame(JPEG, 1))
    assert frame is not None and (frame.image, frame.format, frame.prompt_id) == (JPEG, "jpeg", None)


def test_event_1_png() -> None:
    frame = parse_frame(preview_frame(PNG, 2))
    assert frame is not None and frame.format == "png"


def test_event_4_names_its_prompt_and_node() -> None:
    metadata = {"node_id": "3", "prompt_id": "p-1", "display_node_id": "3", "parent_node_id": None,
                "real_node_id": "3", "image_type": "image/jpeg"}  # fmt: skip
    frame = parse_frame(preview_frame_with_metadata(JPEG, metadata))
    assert frame is not None and (frame.prompt_id, frame.node_id, frame.format, frame.image) == ("p-1", "3", "jpeg", JPEG)


def test_the_recorded_frame_descriptions_match_the_layouts() -> None:
    frames = [m for m in load_capture("ws_messages_preview_latent2rgb_metadata.jsonl") if m.get("binary")]
    assert frames and {f["event_type"] for f in frames} == {4}
    recorded = frames[0]["metadata"]
    frame = parse_frame(preview_frame_with_metadata(JPEG, recorded))
    assert frame is not None and frame.prompt_id == recorded["prompt_id"] and frame.format == "jpeg"
    plain = [m for m in load_capture("ws_messages_preview_latent2rgb.jsonl") if m.get("binary")]
    assert plain and {(f["event_type"], f["image_type"]) for f in plain} == {(1, 1)}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x00\x01",  # shorter than the header
        struct.pack(">II", 1, 1),  # no image
        struct.pack(">II", 1, 9) + JPEG,  # unknown image type
        struct.pack(">II", 3, 4) + b"node" + b"text",  # event 3 (progress text): not a preview
        struct.pack(">II", 4, 500) + b"{}",  # metadata longer than the frame
        struct.pack(">II", 4, 3) + b"{x}" + JPEG,  # metadata not JSON
        struct.pack(">II", 4, 2) + b"[]" + JPEG,  # metadata not an object
        struct.pack(">II", 4, 2) + b"{}" + JPEG,  # no image_type
        preview_frame_with_metadata(b"", {"image_type": "image/png", "prompt_id": "p"}),
        struct.pack(">II", 4, len(b'{"image_type":"image/gif"}')) + b'{"image_type":"image/gif"}' + JPEG,
    ],
)
def test_anything_else_is_not_a_preview(data: bytes) -> None:
    assert parse_frame(data) is None


def test_a_non_string_prompt_id_is_dropped() -> None:
    blob = json.dumps({"image_type": "image/png", "prompt_id": 7}).encode()
    frame = parse_frame(struct.pack(">II", 4, len(blob)) + blob + PNG)
    assert frame is not None and frame.prompt_id is None
