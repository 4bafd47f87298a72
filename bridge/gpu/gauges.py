"""Recorder-friendly gauges: a reading is published at a resolution, and small drift at most so often.

GTT and RAM byte counts, GPU load, temperature and power change with every probe; passed on raw, each
change is a status push over SSE, an MQTT message and a Home Assistant state row (one every 2 s is
~43k rows a day per gauge). A :class:`Deadband` holds the last published value and lets a new one
through when

- it is at least one ``step`` away from it (a real change goes out at once), or
- its rounding to ``step`` differs and ``min_interval`` seconds have passed (drift, rate-limited),
- or it appears or disappears (``None`` in either direction).

Published values are rounded to ``step``, so the same state never reads two ways.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Deadband:
    """One gauge's filter; call it with each raw reading, it answers what to publish."""

    def __init__(self, step: float, min_interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if step <= 0:
            raise ValueError("step must be positive")
        self.step = step
        self.min_interval = min_interval
        self._clock = clock
        self._value: float | None = None
        self._at = -math.inf
        self._seen = False

    def _round(self, raw: float) -> float:
        return round(raw / self.step) * self.step

    def __call__(self, raw: float | None) -> float | None:
        now = self._clock()
        if not self._seen or raw is None or self._value is None:
            new = None if raw is None else self._round(raw)
            if not self._seen or new != self._value:
                self._value, self._at, self._seen = new, now, True
            return self._value
        rounded = self._round(raw)
        if abs(raw - self._value) >= self.step or (rounded != self._value and now - self._at >= self.min_interval):
            self._value, self._at = rounded, now
        return self._value

    def as_int(self, raw: int | None) -> int | None:
        """The same filter for a count (bytes): the published value as an int."""
        value = self(raw)
        return None if value is None else int(value)
