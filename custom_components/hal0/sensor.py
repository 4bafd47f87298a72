"""Sensors: engine state, render queue, LLM requests, GPU (GTT) and RAM memory, render progress, idle-restore, and
GPU load, temperature and power where the bridge's host has amdgpu telemetry (diagnostic, disabled by
default). The bridge publishes gauges at a resolution and rate-limits drift (``[telemetry]``), so
these sensors write few recorder rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfInformation, UnitOfPower, UnitOfTemperature
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .api import Status
from .const import CONTAINER_STATES, ENGINE_STATES
from .coordinator import Hal0ConfigEntry
from .entity import Hal0Entity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class Hal0SensorDescription(SensorEntityDescription):
    value_fn: Callable[[Status], str | int | float | datetime | None]


def _enum(value: str, options: tuple[str, ...]) -> str | None:
    return value if value in options else None


def _memory(key: str, **kwargs: object) -> Hal0SensorDescription:
    """A byte gauge shown in GiB (the bridge reports bytes)."""
    return Hal0SensorDescription(
        key=key,
        translation_key=key,
        device_class=SensorDeviceClass.DATA_SIZE,
        state_class=SensorStateClass.MEASUREMENT,
        native_unit_of_measurement=UnitOfInformation.BYTES,
        suggested_unit_of_measurement=UnitOfInformation.GIBIBYTES,
        suggested_display_precision=1,
        value_fn=lambda s: getattr(s.memory, key),
        **kwargs,  # type: ignore[arg-type]
    )


SENSORS: tuple[Hal0SensorDescription, ...] = (
    Hal0SensorDescription(
        key="engine",
        translation_key="engine",
        device_class=SensorDeviceClass.ENUM,
        options=list(ENGINE_STATES),
        value_fn=lambda s: _enum(s.engine, ENGINE_STATES),
    ),
    Hal0SensorDescription(
        key="container",
        translation_key="container",
        device_class=SensorDeviceClass.ENUM,
        options=list(CONTAINER_STATES),
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: _enum(s.container, CONTAINER_STATES),
    ),
    Hal0SensorDescription(
        key="queue_running",
        translation_key="queue_running",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.queue_running,
    ),
    Hal0SensorDescription(
        key="queue_pending",
        translation_key="queue_pending",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.queue_pending,
    ),
    Hal0SensorDescription(
        key="llm_in_flight",
        translation_key="llm_in_flight",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.llm_in_flight,
    ),
    Hal0SensorDescription(
        key="llm_queued",
        translation_key="llm_queued",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=lambda s: s.llm_queued,
    ),
    _memory("gtt_used"),
    _memory("gtt_total", entity_category=EntityCategory.DIAGNOSTIC),
    _memory("ram_used"),
    _memory("ram_total", entity_category=EntityCategory.DIAGNOSTIC),
    Hal0SensorDescription(
        key="progress",
        translation_key="progress",
        native_unit_of_measurement=PERCENTAGE,
        suggested_display_precision=0,
        # 0 when nothing renders, so graphs and conditions need no "unknown" case
        value_fn=lambda s: s.progress.percent if s.progress else 0,
    ),
    Hal0SensorDescription(
        key="idle_restore_at",
        translation_key="idle_restore_at",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda s: dt_util.utc_from_timestamp(s.idle_restore_at) if s.idle_restore_at else None,
    ),
)


GPU_SENSORS: tuple[Hal0SensorDescription, ...] = (
    Hal0SensorDescription(
        key="gpu_busy",
        translation_key="gpu_busy",
        native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.gpu.busy_percent if s.gpu else None,
    ),
    Hal0SensorDescription(
        key="gpu_temperature",
        translation_key="gpu_temperature",
        device_class=SensorDeviceClass.TEMPERATURE,
        native_unit_of_measurement=UnitOfTemperature.CELSIUS,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.gpu.temperature_c if s.gpu else None,
    ),
    Hal0SensorDescription(
        key="gpu_power",
        translation_key="gpu_power",
        device_class=SensorDeviceClass.POWER,
        native_unit_of_measurement=UnitOfPower.WATT,
        state_class=SensorStateClass.MEASUREMENT,
        suggested_display_precision=0,
        entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,
        value_fn=lambda s: s.gpu.power_w if s.gpu else None,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: Hal0ConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    coordinator = entry.runtime_data
    descriptions = SENSORS
    if coordinator.data.gpu is not None:  # only where the bridge's host has amdgpu telemetry
        descriptions += GPU_SENSORS
    async_add_entities(Hal0Sensor(coordinator, d) for d in descriptions)


class Hal0Sensor(Hal0Entity, SensorEntity):
    entity_description: Hal0SensorDescription

    @property
    def native_value(self) -> str | int | float | datetime | None:
        return self.entity_description.value_fn(self.coordinator.data)
