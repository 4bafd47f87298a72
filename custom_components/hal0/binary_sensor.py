"""Binary sensors: ComfyUI reachable, and a GPU switchover in flight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.binary_sensor import (
    BinarySensorDeviceClass,
    BinarySensorEntity,
    BinarySensorEntityDescription,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import Status
from .coordinator import Hal0ConfigEntry
from .entity import Hal0Entity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class Hal0BinarySensorDescription(BinarySensorEntityDescription):
    is_on_fn: Callable[[Status], bool]
    attrs_fn: Callable[[Status], dict[str, Any]] | None = None


BINARY_SENSORS: tuple[Hal0BinarySensorDescription, ...] = (
    Hal0BinarySensorDescription(
        key="reachable",
        translation_key="reachable",
        device_class=BinarySensorDeviceClass.CONNECTIVITY,
        entity_category=EntityCategory.DIAGNOSTIC,
        is_on_fn=lambda s: s.reachable,
    ),
    Hal0BinarySensorDescription(
        key="switching",
        translation_key="switching",
        device_class=BinarySensorDeviceClass.RUNNING,
        is_on_fn=lambda s: s.switchover.active,
        # the target while it runs, and why the last one failed (kept after it ends)
        attrs_fn=lambda s: {"target": s.switchover.target, "error": s.switchover.error, "trigger": s.switchover.trigger},
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: Hal0ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_entities(Hal0BinarySensor(entry.runtime_data, d) for d in BINARY_SENSORS)


class Hal0BinarySensor(Hal0Entity, BinarySensorEntity):
    entity_description: Hal0BinarySensorDescription

    @property
    def is_on(self) -> bool:
        return self.entity_description.is_on_fn(self.coordinator.data)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        fn = self.entity_description.attrs_fn
        return fn(self.coordinator.data) if fn else None
