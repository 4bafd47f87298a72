"""GPU mode select: who owns GPU memory, inference (LLM slots) or generation (ComfyUI)."""

from __future__ import annotations

from homeassistant.components.select import SelectEntity, SelectEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import MODES
from .coordinator import Hal0ConfigEntry
from .entity import Hal0Entity
from .helpers import hal0_exception_handler

PARALLEL_UPDATES = 1

GPU_MODE = SelectEntityDescription(key="gpu_mode", translation_key="gpu_mode", options=list(MODES))


async def async_setup_entry(
    hass: HomeAssistant, entry: Hal0ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    coordinator = entry.runtime_data
    if "arbiter" in coordinator.info.capabilities:
        async_add_entities([Hal0ModeSelect(coordinator, GPU_MODE)])


class Hal0ModeSelect(Hal0Entity, SelectEntity):
    """Selecting a mode starts a switchover; the state follows the bridge once it is done."""

    @property
    def current_option(self) -> str | None:
        mode = self.coordinator.data.mode
        return mode if mode in MODES else None

    @hal0_exception_handler
    async def async_select_option(self, option: str) -> None:
        await self.coordinator.client.switchover(option)
