"""What the bridge knows about one ComfyUI prompt while it is followed: messages seen, outcome, rate."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import ImageRef, RunResult, pick_images
from .errors import ComfyUIError
from .previews import PreviewFrame


@dataclass(slots=True)
class Tracker:
    """What we know about one prompt; ``outcome`` is set exactly once."""

    prompt_id: str
    created: float  # monotonic
    last_message: float
    started: float | None = None
    finished: float | None = None
    images: list[ImageRef] = field(default_factory=list)
    cached_nodes: set[str] = field(default_factory=set)
    ran_nodes: set[str] = field(default_factory=set)
    output_nodes: set[str] = field(default_factory=set)
    outcome: RunResult | ComfyUIError | None = None
    waiters: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    check_history: bool = False  # look at /history now (reconnect, or the socket's end needs confirming)
    # the socket was down while this prompt was open (or when it was submitted): messages may be lost, so
    # only ComfyUI's /history record may end it (issue 10: for such a prompt history is the final word)
    through_disconnect: bool = False
    ended: bool = False  # executing {node: null} or a terminal message arrived, but the outcome is not settled
    # progress rate: first sample of the current sampler run, and when its node started
    node_started: dict[str, float] = field(default_factory=dict)
    rate_base: tuple[str, int, float] | None = None  # (node, value, time)
    on_preview: Callable[[PreviewFrame], None] | None = None  # who wants this prompt's latent previews

    def touch(self, now: float) -> None:
        self.last_message = now
        self.changed.set()

    def result(self, now: float) -> RunResult:
        end = self.finished if self.finished is not None else now
        timings = {"comfyui_s": round(end - self.created, 3)}
        if self.started is not None:
            timings["queue_s"] = round(self.started - self.created, 3)
            timings["exec_s"] = round(end - self.started, 3)
        return RunResult(
            self.prompt_id,
            pick_images(self.images),
            cached=bool(self.cached_nodes) and not self.ran_nodes,
            timings=timings,
        )

    def rate(self, node: str, value: float, now: float) -> float | None:
        """Sampler steps per second of the current sampler run, from its ``progress`` messages."""
        base = self.rate_base
        if base is None or base[0] != node or value <= base[1]:
            # a new sampler run: measure from its node's start when we saw it, else from here on
            begun = self.node_started.get(node)
            self.rate_base = (node, 0, begun) if begun is not None and value > 0 else (node, int(value), now)
            base = self.rate_base
        elapsed = now - base[2]
        if elapsed > 0 and value > base[1]:
            return (value - base[1]) / elapsed
        return None
