"""Base entity: one device per bridge, names from translation keys.

Identity is the bridge's ``node_id`` (unique ids, device identifier); the device's name -- and so the
entity ids HA derives from it -- is the bridge's hostname, which may change without breaking anything.
"""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity import EntityDescription
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN
from .coordinator import Hal0Coordinator


class Hal0Entity(CoordinatorEntity[Hal0Coordinator]):
    """An entity of one hal0 bridge; state comes only from the coordinator."""

    _attr_has_entity_name = True

    def __init__(self, coordinator: Hal0Coordinator, description: EntityDescription) -> None:
        super().__init__(coordinator)
        self.entity_description = description
        info = coordinator.info
        self._attr_unique_id = f"{info.node_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, info.node_id)},
            name=f"hal0 {info.display_name}",
            manufacturer="hal0",
            model="hal0-bridge",
            sw_version=info.version or None,
            configuration_url=str(coordinator.client.base_url),
        )
