"""Diagnostics: the entry, what the bridge says about itself, and the live status; secrets redacted.

Redacted like the bridge's own ``--print-config``: the token and any key-like field, and the
signature of image URLs (a signed URL opens its image without the token until it expires).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import REDACTED, async_redact_data
from homeassistant.const import CONF_PASSWORD, CONF_TOKEN, CONF_USERNAME
from homeassistant.core import HomeAssistant
from yarl import URL

from .coordinator import Hal0ConfigEntry

TO_REDACT = {CONF_TOKEN, CONF_PASSWORD, CONF_USERNAME, "authorization", "api_key", "headers", "env"}
SIGNATURE_PARAMS = ("sig", "token")


def redact_url(url: str) -> str:
    """The URL with its signature (and any ``token``) query value replaced."""
    parsed = URL(url)
    if not any(name in parsed.query for name in SIGNATURE_PARAMS):
        return url
    query = {k: (REDACTED if k in SIGNATURE_PARAMS else v) for k, v in parsed.query.items()}
    return str(parsed.with_query(query))


async def async_get_config_entry_diagnostics(hass: HomeAssistant, entry: Hal0ConfigEntry) -> dict[str, Any]:
    coordinator = entry.runtime_data
    last_image = asdict(coordinator.last_image) if coordinator.last_image else None
    if last_image is not None:
        last_image["url"] = redact_url(last_image["url"])
    return {
        "entry": async_redact_data(entry.as_dict(), TO_REDACT),
        "bridge": asdict(coordinator.info),
        "push": {"streaming": coordinator.streaming, "last_update_success": coordinator.last_update_success},
        "status": asdict(coordinator.data) if coordinator.data else None,
        "last_image": last_image,
    }
