"""The hal0 integration: one GPU handed between LLM slots and ComfyUI, seen and steered from HA."""

from __future__ import annotations

from homeassistant.const import Platform
from homeassistant.core import HomeAssistant
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.typing import ConfigType

from .const import DOMAIN
from .coordinator import Hal0ConfigEntry, Hal0Coordinator
from .repairs import async_delete_all
from .services import async_setup_services

PLATFORMS = (
    Platform.AI_TASK,
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.IMAGE,
    Platform.SELECT,
    Platform.SENSOR,
    Platform.SWITCH,
)

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions once, so automations validate even while a bridge is not loaded."""
    async_setup_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: Hal0ConfigEntry) -> bool:
    coordinator = Hal0Coordinator(hass, entry)
    await coordinator.async_config_entry_first_refresh()
    entry.runtime_data = coordinator
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: Hal0ConfigEntry) -> bool:
    # The coordinator's shutdown (stream task included) runs when the entry unloads.
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: Hal0ConfigEntry) -> None:
    """A removed bridge leaves no repair issues behind."""
    async_delete_all(hass, entry.entry_id)
