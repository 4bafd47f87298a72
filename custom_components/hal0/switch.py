"""Pin switch: hold generation mode against the bridge's idle-restore."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import Hal0ConfigEntry
from .entity import Hal0Entity
from .helpers import hal0_exception_handler

PARALLEL_UPDATES = 1

PIN = SwitchEntityDescription(key="pin", translation_key="pin")


async def async_setup_entry(
    hass: HomeAssistant, entry: Hal0ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    coordinator = entry.runtime_data
    if "arbiter" in coordinator.info.capabilities:
        async_add_entities([Hal0PinSwitch(coordinator, PIN)])


class Hal0PinSwitch(Hal0Entity, SwitchEntity):
    @property
    def is_on(self) -> bool:
        return self.coordinator.data.pinned

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self._set_pin(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self._set_pin(False)

    # decorated apart from turn_on/off: their **kwargs could carry "self", which the typed decorator forbids
    @hal0_exception_handler
    async def _set_pin(self, pinned: bool) -> None:
        await self.coordinator.client.set_pin(pinned)
