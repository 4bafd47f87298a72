"""The record of one switch: target, trigger, timed phases, warnings and error, and its status view."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..status import Mode, Switchover


def other_mode(mode: Mode) -> Mode:
    return "inference" if mode == "generation" else "generation"


@dataclass(eq=False)
class Switch:
    """One switch in flight (or the last one): what was asked, its timed phases and how it ended."""

    target: Mode
    trigger: str
    force: bool
    pin: bool | None
    started_at: float = field(default_factory=time.time)
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None
    # set when ComfyUI is known to be hung: skip /free and the release wait, restart the img slot (why)
    restart_img: str | None = None
    comfy_fault: bool = False  # it failed because ComfyUI did not do its part (/free, a stop of its slot)

    def view(self) -> Switchover:
        return Switchover(
            active=self.finished_at is None,
            target=self.target,
            error=self.error,
            trigger=self.trigger,
            started_at=self.started_at,
            finished_at=self.finished_at,
            phases=dict(self.phases),
            warnings=tuple(self.warnings),
        )


class SwitchFailed(Exception):
    """Ends a switch procedure early; the reason is already in :attr:`Switch.error`."""
