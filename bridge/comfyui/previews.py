"""ComfyUI's binary websocket frames: latent previews, parsed.

Layouts (tests/captures/README.md "Websocket files"; ComfyUI ``server.py`` ``send_image`` and
``send_image_with_metadata``, ``BinaryEventTypes`` in ``protocol.py``):

* event 1 ``PREVIEW_IMAGE``: ``[uint32 BE 1][uint32 BE image type: 1 = JPEG, 2 = PNG][image bytes]``;
  sent to the socket of the client that queued the prompt, with no prompt id, right after that
  step's ``progress`` message;
* event 4 ``PREVIEW_IMAGE_WITH_METADATA``, sent instead of event 1 to a socket that announced
  ``supports_preview_metadata`` in its first message:
  ``[uint32 BE 4][uint32 BE metadata length][metadata JSON][image bytes]``, the metadata naming
  ``prompt_id``, ``node_id`` and ``image_type`` (``image/jpeg`` or ``image/png``).

Other binary events (unencoded previews, progress text of newer versions) are not previews: ignored.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
IMAGE_TYPES = {1: "jpeg", 2: "png"}
MIME_TYPES = {"image/jpeg": "jpeg", "image/png": "png"}
# what the bridge's socket announces first, so previews name their prompt (event 4)
FEATURE_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
_HEADER = struct.Struct(">II")


@dataclass(frozen=True, slots=True)
class PreviewFrame:
    image: bytes
    format: str  # jpeg | png
    prompt_id: str | None = None  # only event 4 says
    node_id: str | None = None


def parse_frame(data: bytes) -> PreviewFrame | None:
    """A preview frame, or None for anything else (other events, short or malformed frames)."""
    if len(data) < _HEADER.size:
        return None
    event, word = _HEADER.unpack_from(data)
    if event == PREVIEW_IMAGE:
        fmt = IMAGE_TYPES.get(word)
        image = data[_HEADER.size :]
        return PreviewFrame(image, fmt) if fmt and image else None
    if event == PREVIEW_IMAGE_WITH_METADATA:
        end = _HEADER.size + word
        if end > len(data):
            return None
        try:
            metadata = json.loads(data[_HEADER.size : end])
        except ValueError:
            return None
        if not isinstance(metadata, dict):
            return None
        fmt = MIME_TYPES.get(str(metadata.get("image_type")))
        image = data[end:]
        if fmt is None or not image:
            return None
        prompt_id, node_id = metadata.get("prompt_id"), metadata.get("node_id")
        return PreviewFrame(
            image,
            fmt,
            prompt_id if isinstance(prompt_id, str) else None,
            None if node_id is None else str(node_id),
        )
    return None
