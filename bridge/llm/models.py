"""Which LLM models each slot serves: declared in config, else read from the slot's own ``/v1/models``.

A slot's ``models = [...]`` is the list the bridge routes by. Without it, the bridge asks the slot
(``GET /v1/models``, with the slot's ``headers``) each time the slot becomes ready, and keeps the answer:
in memory, and in ``<state_dir>/llm-models.json``, because in generation mode the slots are stopped and
a client must still see (and be routed to) their models, also after a bridge restart. A slot never seen
and declaring nothing has an unknown list (``None``), which the router treats as "serves anything" when
it is the only LLM slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..gpu.slots.slot import Slot
from ..status import StatusHub
from .http1 import UpstreamError
from .proxy import Upstream

_LOG = logging.getLogger(__name__)
CACHE_FILE = "llm-models.json"
FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class LlmModel:
    id: str
    slot: str
    created: int = 0
    owned_by: str = "hal0"
    aliases: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    def listing(self) -> dict[str, Any]:
        """One entry of ``GET /v1/models`` (OpenAI's model object plus ``kind`` and ``slot``)."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "kind": "llm",
            "slot": self.slot,
            "aliases": list(self.aliases),
        }


def parse_models(slot: str, data: Any) -> tuple[LlmModel, ...]:
    """The models in an OpenAI ``/v1/models`` answer; entries without a string ``id`` are skipped."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("not an OpenAI model list (no data array)")
    found: list[LlmModel] = []
    for entry in data["data"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            continue
        created = entry.get("created")
        owned_by = entry.get("owned_by")
        aliases = entry.get("aliases")
        found.append(
            LlmModel(
                id=entry["id"],
                slot=slot,
                created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
                owned_by=owned_by if isinstance(owned_by, str) and owned_by else "hal0",
                aliases=tuple(
                    a for a in (aliases if isinstance(aliases, list) else []) if isinstance(a, str) and a and a != entry["id"]
                ),
            )
        )
    return tuple(found)


class ModelDirectory:
    """The model lists of all LLM slots; refreshed when a slot becomes ready, persisted across restarts."""

    def __init__(self, slots: list[Slot], upstream: Upstream, state_dir: Path) -> None:
        self._slots = {s.name: s for s in slots}
        self._upstream = upstream
        self._path = state_dir / CACHE_FILE
        self._fetched: dict[str, tuple[LlmModel, ...]] = {}
        self._task: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] = lambda: None

    # ------------------------------------------------------------------------------ reading

    @property
    def slot_names(self) -> list[str]:
        return list(self._slots)

    def models_of(self, slot: str) -> tuple[LlmModel, ...] | None:
        """What ``slot`` serves: its declared names (with what its ``/v1/models`` said about them),
        else its last ``/v1/models`` answer, else None (unknown)."""
        cfg = self._slots[slot].cfg
        fetched = self._fetched.get(slot)
        if cfg.models:
            known = {m.id: m for m in fetched or ()}
            return tuple(known.get(name) or LlmModel(id=name, slot=slot) for name in cfg.models)
        return fetched

    def all(self) -> list[LlmModel]:
        return [m for name in self._slots for m in self.models_of(name) or ()]

    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.all())

    # ------------------------------------------------------------------------------ refreshing

    async def refresh(self, slot: str) -> bool:
        """Read ``slot``'s ``/v1/models`` now (bounded by its probe timeout); False when it did not answer."""
        s = self._slots[slot]
        if not s.url:
            return False
        try:
            status, data = await self._upstream.get_json(s.url + "/v1/models", s.cfg.headers, s.cfg.probe_timeout)
            if status != 200:
                _LOG.info("slot %s: GET /v1/models answered %d", slot, status)
                return False
            models = parse_models(slot, data)
        except (UpstreamError, OSError, TimeoutError, ValueError) as err:
            _LOG.info("slot %s: cannot read /v1/models: %s", slot, err)
            return False
        if self._fetched.get(slot) != models:
            self._fetched[slot] = models
            try:
                await self._save()
            except OSError as err:
                _LOG.warning("LLM model list not saved: %s", err)
            self.on_change()
        return True

    async def start(self, hub: StatusHub) -> None:
        """Load the saved lists, read the slots that are ready now, then follow slot states."""
        if not self._slots:
            return  # no LLM slot: nothing to list or follow
        await self._load()
        if self._task is None:
            self._task = asyncio.create_task(self._follow(hub), name="llm-models")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self, hub: StatusHub) -> None:
        """Refresh a slot's list each time it becomes ready (a restart may bring another model)."""
        ready: set[str] = set()
        with hub.subscribe(initial=True) as feed:
            async for message in feed:
                if message.kind != "status":
                    continue
                now = {
                    s["name"] for s in message.data.get("slots", ()) if s["name"] in self._slots and s["state"] == "ready"
                }
                for name in sorted(now - ready):
                    await self.refresh(name)
                ready = now

    # ------------------------------------------------------------------------------ persistence

    async def _load(self) -> None:
        try:
            raw = json.loads(await asyncio.to_thread(self._path.read_text))
            slots = raw["slots"]
            loaded = {
                name: tuple(
                    LlmModel(id=m["id"], slot=name, created=int(m["created"]), owned_by=str(m["owned_by"]),
                             aliases=tuple(str(a) for a in m["aliases"]))  # fmt: skip
                    for m in entries
                )
                for name, entries in slots.items()
                if name in self._slots
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as err:
            _LOG.warning("%s: ignored (%s)", self._path, err)
            return
        self._fetched = loaded
        self.on_change()

    async def _save(self) -> None:
        data = {
            "version": FORMAT_VERSION,
            "slots": {name: [asdict(m) | {"aliases": list(m.aliases)} for m in models] for name, models in self._fetched.items()},
        }
        await asyncio.to_thread(_write_atomic, self._path, json.dumps(data, indent=1))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
