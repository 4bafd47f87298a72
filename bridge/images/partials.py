"""Which of ComfyUI's latent previews become a stream's ``partial_images``.

ComfyUI sends one preview per sampler step (``latent_preview.prepare_callback``: one
``update_absolute(step + 1, total, preview)`` per step). A request asks for 0-3 partial images, so
the picker forwards the previews of evenly spaced steps — for 20 steps and 2 partial images, steps 7
and 14 — and never the last step's (the completed image follows it). A render with fewer steps than
wanted partial images sends fewer, as OpenAI's own stream may ("the final image may be sent before
the full number of partial images are generated").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..comfyui.previews import PreviewFrame


@dataclass(frozen=True, slots=True)
class Partial:
    index: int  # partial_image_index, 0-based
    image: bytes  # as ComfyUI encoded the preview
    format: str  # jpeg | png


PartialSink = Callable[[Partial], None]


def preview_steps(steps: int, wanted: int) -> frozenset[int]:
    """The 1-based sampler steps whose previews are forwarded."""
    if wanted <= 0 or steps <= 0:
        return frozenset()
    picked = {max(1, math.ceil(steps * i / (wanted + 1))) for i in range(1, wanted + 1)}
    below_last = {s for s in picked if s < steps}
    return frozenset(below_last or {min(picked)})


class PreviewPicker:
    """Counts a render's previews (one per step) and hands the picked ones on, numbered."""

    def __init__(self, steps: int, wanted: int, sink: PartialSink) -> None:
        self._steps = preview_steps(steps, wanted)
        self._wanted = wanted
        self._sink = sink
        self._seen = 0
        self._sent = 0

    def __call__(self, frame: PreviewFrame) -> None:
        self._seen += 1
        if self._seen in self._steps and self._sent < self._wanted:
            self._sink(Partial(self._sent, frame.image, frame.format))
            self._sent += 1
