"""``[mqtt] discovery``, which the API may change at run time (``POST /api/mqtt/discovery``).

Why it can change at run time: with the Home Assistant integration set up, the bridge's own MQTT
discovery duplicates every entity, and the integration's repair turns it off with one click
(docs/decisions.md). The choice is kept in ``state_dir/mqtt_discovery.json``, so a restart does not
bring the duplicates back; it wins over the config file until the API changes it again, and the
start-up log says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

_LOGGER = logging.getLogger(__name__)

OVERRIDE_FILE = "mqtt_discovery.json"


class DiscoverySetting:
    """The effective discovery switch: the config value, or what the API stored."""

    def __init__(self, configured: bool, state_dir: Path) -> None:
        self.configured = configured
        self.path = Path(state_dir) / OVERRIDE_FILE
        self._override: bool | None = None
        self._lock = asyncio.Lock()
        self.listeners: list[Callable[[bool], None]] = []

    @property
    def enabled(self) -> bool:
        return self.configured if self._override is None else self._override

    @property
    def source(self) -> Literal["config", "api"]:
        return "config" if self._override is None else "api"

    async def load(self) -> None:
        """Read a stored choice; a missing or unreadable file means "follow the config"."""
        self._override = await asyncio.to_thread(self._load_sync)
        if self._override is not None and self._override != self.configured:
            _LOGGER.warning(
                "MQTT discovery is %s (set through the API, stored in %s), not %s as the config says",
                "on" if self._override else "off", self.path, "on" if self.configured else "off",
            )

    async def set(self, enabled: bool) -> None:
        """Store the choice first (a restart keeps it), then tell the listeners (the MQTT side)."""
        async with self._lock:
            await asyncio.to_thread(self._save_sync, enabled)
            changed = enabled != self.enabled
            self._override = enabled
        if changed:
            for listener in list(self.listeners):
                listener(enabled)

    def _load_sync(self) -> bool | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            _LOGGER.warning("ignoring %s: %s", self.path, err)
            return None
        enabled = data.get("enabled") if isinstance(data, dict) else None
        return enabled if isinstance(enabled, bool) else None

    def _save_sync(self, enabled: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{OVERRIDE_FILE}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"enabled": enabled, "set_at": time.time()}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
