"""GPU load, temperature and power sensors: present only where the bridge's host has amdgpu telemetry,
diagnostic and disabled by default, and following the bridge once enabled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er

from custom_components.hal0.const import DOMAIN

from .conftest import RunningBridge, base_config, setup_entry, wait_until

GIB = 1024**3
KEYS = ("gpu_busy", "gpu_temperature", "gpu_power")


def _sysfs(root: Path) -> Path:
    """An amdgpu card laid out like the kernel's sysfs (load 12 %, 48 °C, 23 W)."""
    device = root / "card0" / "device"
    hwmon = device / "hwmon" / "hwmon0"
    hwmon.mkdir(parents=True)
    (device / "mem_info_gtt_total").write_text(f"{96 * GIB}\n")
    (device / "mem_info_gtt_used").write_text(f"{2 * GIB}\n")
    (device / "gpu_busy_percent").write_text("12\n")
    (hwmon / "temp1_input").write_text("48000\n")
    (hwmon / "power1_average").write_text("23000000\n")
    return device


async def test_gpu_sensors_are_diagnostic_and_disabled_by_default(
    hass: HomeAssistant, make_bridge: Any, tmp_path: Path
) -> None:
    config = base_config(tmp_path)
    _sysfs(tmp_path / "drm")
    config["telemetry"] = {"sysfs_root": str(tmp_path / "drm"), "gpu_interval": 0.1}
    running = await make_bridge(config=config)

    await setup_entry(hass, running)

    registry = er.async_get(hass)
    for key in KEYS:
        entry = registry.async_get(registry.async_get_entity_id("sensor", DOMAIN, f"{running.node_id}_{key}") or "")
        assert entry is not None, key
        assert entry.entity_category is EntityCategory.DIAGNOSTIC
        assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION


async def test_enabled_gpu_sensors_follow_the_bridge(hass: HomeAssistant, make_bridge: Any, tmp_path: Path) -> None:
    config = base_config(tmp_path)
    device = _sysfs(tmp_path / "drm")
    config["telemetry"] = {"sysfs_root": str(tmp_path / "drm"), "gpu_interval": 0.1}
    running = await make_bridge(config=config)
    entry = await setup_entry(hass, running)
    registry = er.async_get(hass)
    ids = {key: registry.async_get_entity_id("sensor", DOMAIN, f"{running.node_id}_{key}") for key in KEYS}
    for entity_id in ids.values():
        assert entity_id is not None
        registry.async_update_entity(entity_id, disabled_by=None)
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()

    # the bridge publishes load in 5 % steps: 12 % reads 10 %
    assert [hass.states.get(ids[k]).state for k in KEYS] == ["10.0", "48.0", "23.0"]
    (device / "gpu_busy_percent").write_text("97\n")
    await wait_until(lambda: hass.states.get(ids["gpu_busy"]).state == "95.0", "load pushed")


async def test_a_host_without_amdgpu_gets_no_gpu_sensors(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)

    registry = er.async_get(hass)
    assert all(registry.async_get_entity_id("sensor", DOMAIN, f"{bridge.node_id}_{k}") is None for k in KEYS)
