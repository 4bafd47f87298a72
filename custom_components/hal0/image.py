"""Image entity: the newest image the bridge generated, from any client (HA, OpenAI clients, MQTT)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.image import ImageEntity, ImageEntityDescription
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .api import Hal0Error
from .const import LOGGER
from .coordinator import Hal0ConfigEntry, Hal0Coordinator
from .entity import Hal0Entity

PARALLEL_UPDATES = 0

LAST_IMAGE = ImageEntityDescription(key="last_image", translation_key="last_image")


async def async_setup_entry(
    hass: HomeAssistant, entry: Hal0ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    coordinator = entry.runtime_data
    if "images" in coordinator.info.capabilities:
        async_add_entities([Hal0LastImage(hass, coordinator)])


class Hal0LastImage(Hal0Entity, ImageEntity):
    """Fetches the PNG from the bridge's image cache once per new image, through the shared session."""

    _attr_content_type = "image/png"

    def __init__(self, hass: HomeAssistant, coordinator: Hal0Coordinator) -> None:
        Hal0Entity.__init__(self, coordinator, LAST_IMAGE)
        ImageEntity.__init__(self, hass)
        self._url: str | None = None
        self._bytes: bytes | None = None
        self._sync_image()

    @callback
    def _sync_image(self) -> None:
        last = self.coordinator.last_image
        if last is None or last.url == self._url:
            return
        self._url = last.url
        self._bytes = None
        self._attr_image_last_updated = dt_util.utc_from_timestamp(last.time)

    @callback
    def _handle_coordinator_update(self) -> None:
        self._sync_image()
        super()._handle_coordinator_update()

    async def async_image(self) -> bytes | None:
        if self._url is None:
            return None
        if self._bytes is None:
            try:
                self._bytes = await self.coordinator.client.fetch_image(self._url)
            except Hal0Error as err:
                # evicted from the bridge's bounded cache, or the bridge is away
                LOGGER.debug("Cannot fetch the last image %s: %s", self._url, err)
                return None
        return self._bytes

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        last = self.coordinator.last_image
        if last is None:
            return None
        return {"url": last.url, "model": last.model, "seed": last.seed, "prompt_id": last.prompt_id}
