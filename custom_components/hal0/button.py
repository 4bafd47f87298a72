"""Cancel-renders button: drops pending ComfyUI renders and interrupts the running one."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import Hal0ConfigEntry
from .entity import Hal0Entity
from .helpers import hal0_exception_handler

PARALLEL_UPDATES = 1

CANCEL_RENDERS = ButtonEntityDescription(key="cancel_renders", translation_key="cancel_renders")


async def async_setup_entry(
    hass: HomeAssistant, entry: Hal0ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_entities([Hal0CancelButton(entry.runtime_data, CANCEL_RENDERS)])


class Hal0CancelButton(Hal0Entity, ButtonEntity):
    @hal0_exception_handler
    async def async_press(self) -> None:
        await self.coordinator.client.cancel()
