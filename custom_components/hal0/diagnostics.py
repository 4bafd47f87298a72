"""Diagnostics: the entry, what the bridge says about itself, and the live status; secrets redacted."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_PASSWORD, CONF_TOKEN, CONF_USERNAME
from homeassistant.core import HomeAssistant

from .coordinator import Hal0ConfigEntry

TO_REDACT = {CONF_TOKEN, CONF_PASSWORD, CONF_USERNAME, "authorization", "api_key"}


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: Hal0ConfigEntry) -> dict[str, Any]:
    coordinator = entry.runtime_data
    return {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "bridge": asdict(coordinator.info),
        "push": {"streaming": coordinator.streaming, "last_update_success": coordinator.last_update_success},
        "status": asdict(coordinator.data) if coordinator.data else None,
        "last_image": asdict(coordinator.last_image) if coordinator.last_image else None,
    }
