"""The coordinator: owns all I/O with one bridge.

Push first: a background task follows ``/api/events`` and feeds every ``status`` snapshot straight
into the entities, with no polling while the stream is up. When the stream breaks the coordinator
polls ``/api/comfyui/status`` every ``POLL_INTERVAL`` instead, and each successful poll tries the
stream again, so it reconnects by itself. Entities go unavailable only when polling fails too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
import time
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed, ConfigEntryError
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .api import BridgeInfo, Hal0AuthError, Hal0Client, Hal0Error, SseEvent, Status
from .const import DOMAIN, EVENT_HAL0, LOGGER, POLL_INTERVAL, STREAM_BACKOFF_MAX_POLLS, STREAM_STABLE_AFTER
from .repairs import async_check_bridge, async_check_status

type Hal0ConfigEntry = ConfigEntry[Hal0Coordinator]


@dataclass(frozen=True, slots=True)
class LastImage:
    """The newest image the bridge generated, from any client (SSE ``image_generated``)."""

    url: str
    model: str | None
    seed: int | None
    prompt_id: str | None
    time: float


class Hal0Coordinator(DataUpdateCoordinator[Status]):
    """Status of one bridge, pushed over SSE with polling as the fallback."""

    config_entry: Hal0ConfigEntry
    info: BridgeInfo

    def __init__(self, hass: HomeAssistant, entry: Hal0ConfigEntry) -> None:
        self.client = Hal0Client(
            async_get_clientsession(hass),
            entry.data[CONF_HOST],
            entry.data[CONF_PORT],
            entry.data.get(CONF_TOKEN),
        )
        self.last_image: LastImage | None = None
        self._stream_task: asyncio.Task[None] | None = None
        # False only during the poll right after the stream broke, so a bridge whose stream fails at
        # once is retried at the polling pace, not in a tight loop.
        self._resume_stream = True
        # streams that ended soon after they opened, in a row, and the polls to wait before the next
        self._stream_failures = 0
        self._polls_before_stream = 0
        super().__init__(hass, LOGGER, config_entry=entry, name=DOMAIN, update_interval=POLL_INTERVAL)

    @property
    def streaming(self) -> bool:
        """True while the event stream is being followed (push mode, nothing polls)."""
        return self._stream_task is not None and self.update_interval is None

    async def _async_setup(self) -> None:
        """Once per setup: the bridge must be the one configured, and the token must be accepted."""
        try:
            self.info = await self.client.info()
            await self.client.check_auth()
        except Hal0AuthError as err:
            raise ConfigEntryAuthFailed(translation_domain=DOMAIN, translation_key="invalid_auth") from err
        except Hal0Error as err:
            raise UpdateFailed(
                translation_domain=DOMAIN, translation_key="cannot_connect", translation_placeholders={"error": str(err)}
            ) from err
        if self.info.node_id != self.config_entry.unique_id:
            raise ConfigEntryError(
                translation_domain=DOMAIN,
                translation_key="node_mismatch",
                translation_placeholders={"expected": str(self.config_entry.unique_id), "actual": self.info.node_id},
            )
        if not async_check_bridge(self.hass, self.config_entry.entry_id, self.config_entry.title, self.info):
            # retried with backoff: once the bridge is updated, the entry loads by itself
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="api_too_old",
                translation_placeholders={"version": str(self.info.api_version)},
            )

    async def _async_update_data(self) -> Status:
        """One poll; a successful poll while the stream is down starts the stream again."""
        try:
            status = await self.client.status()
        except Hal0Error as err:
            raise UpdateFailed(
                translation_domain=DOMAIN, translation_key="cannot_connect", translation_placeholders={"error": str(err)}
            ) from err
        if self._stream_due():
            self._start_stream()
        async_check_status(self.hass, self.config_entry.entry_id, self.config_entry.title, status)
        return status

    @callback
    def _start_stream(self) -> None:
        self._stream_task = self.config_entry.async_create_background_task(
            self.hass, self._follow_stream(), f"{DOMAIN} {self.config_entry.title} events"
        )

    def _stream_due(self) -> bool:
        """Whether this successful poll starts the stream (not while backing off after quick failures)."""
        if self._stream_task is not None or not self._resume_stream:
            return False
        if self._polls_before_stream > 0:
            self._polls_before_stream -= 1
            return False
        return True

    async def _follow_stream(self) -> None:
        """Follow the event stream until it ends, then fall back to polling at once.

        Whatever ends the stream -- the bridge going away, garbage on the wire, a bug in a parser --
        the ``finally`` puts polling back, so the entry can never be left frozen with push off and
        nothing polling. A stream that fails soon after it opened is retried with backoff.
        """
        started = time.monotonic()
        try:
            try:
                async for event in self.client.events():
                    if self.update_interval is not None:
                        LOGGER.debug("Event stream of %s connected; push updates on", self.config_entry.title)
                        self.update_interval = None  # push: nothing to poll while the stream is up
                    self._handle_event(event)
            except Hal0Error as err:
                LOGGER.debug("Event stream of %s broke: %s", self.config_entry.title, err)
            except Exception:  # noqa: BLE001 - a bug or an unexpected error type must not freeze the entry
                log = LOGGER.warning if self._stream_failures == 0 else LOGGER.debug
                log("Event stream of %s failed; polling instead", self.config_entry.title, exc_info=True)
            finally:
                self.update_interval = POLL_INTERVAL
                self._note_stream_end(time.monotonic() - started)
            if self.hass.is_stopping:
                return
            # Poll now: if the bridge is gone the entities go unavailable (with one log line).
            self._resume_stream = False
            try:
                await self.async_refresh()
            finally:
                self._resume_stream = True
        finally:
            # only now: no poll starts a second stream while this one is still polling
            if self._stream_task is asyncio.current_task():
                self._stream_task = None

    def _note_stream_end(self, lasted: float) -> None:
        """Back off after streams that end quickly: the n-th quick failure in a row waits for
        2**(n-1) polls (capped); a stream that ran for a while is retried at the next poll."""
        if lasted >= STREAM_STABLE_AFTER:
            self._stream_failures = 0
        else:
            self._stream_failures += 1
        self._polls_before_stream = min(2 ** max(self._stream_failures - 1, 0), STREAM_BACKOFF_MAX_POLLS) - 1

    @callback
    def _handle_event(self, event: SseEvent) -> None:
        if event.event == "status":
            status = Status.from_dict(event.data)
            async_check_status(self.hass, self.config_entry.entry_id, self.config_entry.title, status)
            self.async_set_updated_data(status)
            return
        if event.event == "image_generated":
            urls = [u for u in event.data.get("urls") or [] if isinstance(u, str)]
            if urls:
                self.record_image(
                    self.client.url(urls[-1]),
                    model=event.data.get("model"),
                    seed=event.data.get("seed"),
                    prompt_id=event.data.get("prompt_id"),
                    when=event.data.get("time"),
                )
        self.hass.bus.async_fire(
            EVENT_HAL0, {"config_entry_id": self.config_entry.entry_id, "node_id": self.info.node_id, **event.data}
        )

    @callback
    def record_image(
        self,
        url: str,
        *,
        model: Any = None,
        seed: Any = None,
        prompt_id: Any = None,
        when: Any = None,
    ) -> None:
        """Remember the newest image (from the stream or from our own action) and tell the entities."""
        if self.last_image is not None and self.last_image.url == url:
            return
        self.last_image = LastImage(
            url=url,
            model=model if isinstance(model, str) else None,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            prompt_id=prompt_id if isinstance(prompt_id, str) else None,
            time=float(when) if isinstance(when, (int, float)) and not isinstance(when, bool) else time.time(),
        )
        self.async_update_listeners()

    async def async_shutdown(self) -> None:
        """Stop following the stream when the entry unloads."""
        await super().async_shutdown()
        if self._stream_task is not None:
            self._stream_task.cancel()
            self._stream_task = None

