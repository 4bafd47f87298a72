"""Diagnostics show the bridge and its live status, never the token."""

from __future__ import annotations

import json

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .conftest import TOKEN, RunningBridge, setup_entry


async def test_diagnostics_redact_the_token(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, bridge: RunningBridge
) -> None:
    entry = await setup_entry(hass, bridge)

    diag = await get_diagnostics_for_config_entry(hass, hass_client, entry)

    assert TOKEN not in json.dumps(diag)
    assert diag["entry"]["data"]["token"] == "**REDACTED**"


async def test_diagnostics_show_bridge_identity_and_status(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, bridge: RunningBridge
) -> None:
    entry = await setup_entry(hass, bridge)

    diag = await get_diagnostics_for_config_entry(hass, hass_client, entry)

    assert diag["bridge"]["node_id"] == bridge.node_id
    assert diag["status"]["engine"] == "stopped"
    assert diag["status"]["mode"] == "generation"  # no slots configured: ComfyUI is the only GPU user


async def test_diagnostics_redact_the_signature_of_image_urls(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, bridge: RunningBridge
) -> None:
    entry = await setup_entry(hass, bridge)
    signed = f"{bridge.url}/api/images/cache/{'0' * 32}.png?exp=1796239081&sig=DMIHsXkdG4sHTy_houWFZGfML9aLELkhCD00k8QD3wY"
    entry.runtime_data.record_image(signed)

    diag = await get_diagnostics_for_config_entry(hass, hass_client, entry)

    assert "DMIHsXkdG4sHTy" not in json.dumps(diag)
    assert diag["last_image"]["url"].startswith(f"{bridge.url}/api/images/cache/")
    assert "exp=1796239081" in diag["last_image"]["url"]  # when it expires is no secret
