"""Which latent previews become partial images: evenly spaced steps, never the last, at most the asked number."""

from __future__ import annotations

import pytest
from hal0_bridge.comfyui.previews import PreviewFrame
from hal0_bridge.images.partials import Partial, PreviewPicker, preview_steps


@pytest.mark.parametrize(
    ("steps", "wanted", "expected"),
    [
        (20, 2, {7, 14}),
        (20, 3, {5, 10, 15}),
        (20, 1, {10}),
        (4, 3, {1, 2, 3}),
        (4, 1, {2}),
        (2, 3, {1}),
        (1, 2, {1}),  # one step: its preview is all there is
        (20, 0, set()),
    ],
)
def test_preview_steps(steps: int, wanted: int, expected: set[int]) -> None:
    assert preview_steps(steps, wanted) == expected


def test_the_picker_numbers_what_it_forwards_from_zero() -> None:
    got: list[Partial] = []
    picker = PreviewPicker(20, 2, got.append)
    for step in range(1, 21):
        picker(PreviewFrame(f"step {step}".encode(), "jpeg"))
    assert [(p.index, p.image, p.format) for p in got] == [(0, b"step 7", "jpeg"), (1, b"step 14", "jpeg")]


def test_a_second_sampler_never_adds_more_than_asked() -> None:
    got: list[Partial] = []
    picker = PreviewPicker(4, 3, got.append)
    for _ in range(8):  # a template with two samplers: twice the previews
        picker(PreviewFrame(b"x", "png"))
    assert [p.index for p in got] == [0, 1, 2]
