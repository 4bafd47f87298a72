"""The two narrow views between the GPU arbiter and the LLM proxy (issue 12).

:class:`LlmGate` is what the LLM proxy needs from whoever owns the GPU (the mirror of
:class:`~hal0_bridge.gpu.gate.GpuGate` for images): "may a request go to its slot now?", "refuse at
once when demand may not move the GPU", and "get the GPU to inference, waiting for a switch in
flight or starting one".

:class:`LlmWork` is what the arbiter needs from the LLM proxy: how many proxied requests a slot is
answering, and a bounded wait until it answers none. The proxy counts its own requests, so the drain
of a switch to generation is exact for everything that goes through the bridge; ``GET /slots`` still
covers clients that talk to a slot directly. Without an LLM proxy the arbiter uses
:class:`NoLlmWork`.
"""

from __future__ import annotations

from typing import Protocol


class LlmGate(Protocol):
    def llm_ready(self) -> bool: ...  # inference is settled and no switch is in flight

    def check_inference(self, may_switch: bool) -> None: ...  # raises gpu.image_mode (503)

    async def ensure_inference(self, trigger: str = "llm", *, may_switch: bool = True) -> None: ...


class LlmWork(Protocol):
    def in_flight(self, slot: str) -> int: ...

    async def wait_idle(self, slot: str, timeout: float) -> bool: ...  # False: still busy at the end


class NoLlmWork:
    """No LLM proxy: nothing is in flight through the bridge."""

    def in_flight(self, slot: str) -> int:
        return 0

    async def wait_idle(self, slot: str, timeout: float) -> bool:
        return True
