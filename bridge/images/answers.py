"""The OpenAI wire shapes of a finished render: the JSON answer and the stream's events.

Event fields are the ones the official ``openai`` client parses (``openai.types``:
``ImageGenPartialImageEvent`` / ``ImageGenCompletedEvent`` and their ``ImageEdit*`` twins): ``type``,
``b64_json``, ``created_at``, ``size``, ``quality``, ``background``, ``output_format``, plus
``partial_image_index`` on partial images and ``usage`` on completed ones. ComfyUI counts no tokens,
so ``usage`` is all zeros; ``_hal0`` (what was really used) rides on every completed event.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from .partials import Partial

StreamKind = Literal["image_generation", "image_edit"]
NO_USAGE = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """A finished render: the images in their output format, their cache URLs and ``_hal0``."""

    created: int
    images: list[bytes]
    urls: list[str]
    output_format: str
    size: str
    used: dict[str, Any]

    def answer(self, response_format: str) -> dict[str, Any]:
        """``{created, data: [{url} | {b64_json}], output_format, size, _hal0}`` (OpenAI's
        ``ImagesResponse`` plus ours)."""
        if response_format == "b64_json":
            data: list[dict[str, str]] = [{"b64_json": _b64(image)} for image in self.images]
        else:
            data = [{"url": url} for url in self.urls]
        return {
            "created": self.created,
            "data": data,
            "output_format": self.output_format,
            "size": self.size,
            "_hal0": self.used,
        }

    def completed_events(self, kind: StreamKind) -> list[dict[str, Any]]:
        """One ``<kind>.completed`` per image (``n`` > 1 gives several)."""
        return [
            {
                "type": f"{kind}.completed",
                "b64_json": _b64(image),
                "created_at": self.created,
                "size": self.size,
                "quality": "auto",
                "background": "opaque",
                "output_format": self.output_format,
                "usage": NO_USAGE,
                "_hal0": {**self.used, "index": index},
            }
            for index, image in enumerate(self.images)
        ]


def partial_event(kind: StreamKind, partial: Partial, *, created: int, size: str) -> dict[str, Any]:
    """One ``<kind>.partial_image``: the preview as ComfyUI encoded it (``output_format`` says which)."""
    return {
        "type": f"{kind}.partial_image",
        "b64_json": _b64(partial.image),
        "partial_image_index": partial.index,
        "created_at": created,
        "size": size,
        "quality": "auto",
        "background": "opaque",
        "output_format": partial.format,
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
