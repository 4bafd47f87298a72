"""The arbiter's persisted state: one small JSON file, written atomically.

The arbiter writes it *before* it acts (crash-safe): after a crash or SIGKILL the next start reads which
mode was wanted, which LLM slots to bring back and whether a switch was in flight, and finishes the job
instead of leaving the GPU wedged. A missing or corrupt file is never fatal: it yields the safe default
(inference, unpinned) and the reason, which the caller logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..status import Mode

STATE_FILE = "arbiter.json"
FORMAT_VERSION = 1
_MODES = ("inference", "generation")


@dataclass(frozen=True, slots=True)
class ArbiterState:
    """What must survive a restart.

    ``mode`` is the mode being held (or, while ``switching_to`` is set, the mode being entered: the
    state is persisted first, then acted on). ``incomplete`` marks a mode whose last switch did not
    finish (e.g. an LLM slot failed to restart), so asking for that mode again retries instead of
    answering "noop". ``since`` is when the mode was entered; with ``last_image_activity`` it anchors
    the idle-restore window. ``known_llm_slots`` are the LLM slots this state has seen: a configured
    slot missing from it is new, so its ``autostart`` decides whether inference mode runs it (None: a
    file written before the field existed, every configured slot counts as known).
    """

    mode: Mode = "inference"
    pinned: bool = False
    saved_llm_slots: tuple[str, ...] = ()
    last_image_activity: float | None = None
    switching_to: Mode | None = None
    switch_trigger: str | None = None
    incomplete: bool = False
    since: float | None = None
    known_llm_slots: tuple[str, ...] | None = None

    def with_(self, **changes: Any) -> ArbiterState:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["saved_llm_slots"] = list(self.saved_llm_slots)
        data["known_llm_slots"] = None if self.known_llm_slots is None else list(self.known_llm_slots)
        data["version"] = FORMAT_VERSION
        return data

    @classmethod
    def from_json(cls, data: Any) -> ArbiterState:
        """Strict parse: anything unexpected raises ValueError (the caller falls back to the default)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        mode = data.get("mode", "inference")
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}")
        switching_to = data.get("switching_to")
        if switching_to is not None and switching_to not in _MODES:
            raise ValueError(f"unknown switching_to {switching_to!r}")
        saved = data.get("saved_llm_slots", [])
        if not isinstance(saved, list) or not all(isinstance(s, str) for s in saved):
            raise ValueError("saved_llm_slots must be a list of names")
        known = data.get("known_llm_slots")
        if known is not None and (not isinstance(known, list) or not all(isinstance(s, str) for s in known)):
            raise ValueError("known_llm_slots must be a list of names")
        pinned = data.get("pinned", False)
        incomplete = data.get("incomplete", False)
        if not isinstance(pinned, bool) or not isinstance(incomplete, bool):
            raise ValueError("pinned/incomplete must be booleans")
        return cls(
            mode=mode,
            pinned=pinned,
            saved_llm_slots=tuple(saved),
            last_image_activity=_opt_time(data.get("last_image_activity")),
            switching_to=switching_to,
            switch_trigger=data.get("switch_trigger") if isinstance(data.get("switch_trigger"), str) else None,
            incomplete=incomplete,
            since=_opt_time(data.get("since")),
            known_llm_slots=None if known is None else tuple(known),
        )


def _opt_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected epoch seconds, got {value!r}")
    return float(value)


class StateStore:
    """Loads and atomically saves :class:`ArbiterState` (temp file + fsync + rename + directory fsync).

    File I/O runs in a worker thread so the event loop never blocks on a slow disk; saves are
    serialised so an older state can never overwrite a newer one.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._lock = asyncio.Lock()

    async def load(self) -> tuple[ArbiterState, str | None]:
        """The stored state, or the default plus why the stored one could not be used."""
        return await asyncio.to_thread(self._load_sync)

    async def save(self, state: ArbiterState) -> None:
        async with self._lock:
            await asyncio.to_thread(self._save_sync, state)

    def _load_sync(self) -> tuple[ArbiterState, str | None]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ArbiterState(), None
        except OSError as err:
            return ArbiterState(), f"cannot read {self.path}: {err}"
        try:
            return ArbiterState.from_json(json.loads(raw)), None
        except (ValueError, TypeError) as err:
            return ArbiterState(), f"ignoring corrupt {self.path}: {err}"

    def _save_sync(self, state: ArbiterState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(state.to_json(), indent=2, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
