"""The actions' contract at its edges: input validation, target resolution, bridge errors by code."""

from __future__ import annotations

import pytest
import voluptuous as vol
from homeassistant import config_entries
from homeassistant.const import CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hal0.const import DOMAIN

from .conftest import RunningBridge, setup_entry


async def _call(hass: HomeAssistant, service: str, data: dict, *, response: bool = True):
    return await hass.services.async_call(DOMAIN, service, data, blocking=True, return_response=response)


async def test_actions_are_registered_without_any_entry(hass: HomeAssistant) -> None:
    from homeassistant.setup import async_setup_component

    assert await async_setup_component(hass, DOMAIN, {})

    assert hass.services.has_service(DOMAIN, "switchover")
    assert hass.services.has_service(DOMAIN, "generate_image")


async def test_switchover_rejects_an_unknown_mode(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)

    with pytest.raises(vol.Invalid):
        await _call(hass, "switchover", {"mode": "turbo"})


async def test_generate_image_rejects_an_empty_prompt(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)

    with pytest.raises(vol.Invalid):
        await _call(hass, "generate_image", {"prompt": ""})


async def test_generate_image_rejects_a_malformed_size(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)

    with pytest.raises(vol.Invalid):
        await _call(hass, "generate_image", {"prompt": "a cat", "size": "big"})


async def test_uncurated_model_is_a_validation_error_with_the_bridge_code(
    hass: HomeAssistant, bridge: RunningBridge
) -> None:
    await setup_entry(hass, bridge)

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "generate_image", {"prompt": "a cat", "model": "no-such-model"})

    assert err.value.translation_key == "api_error"
    assert err.value.translation_placeholders["code"] == "image.model_not_curated"


async def test_switchover_without_arbiter_carries_the_bridge_code(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)

    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "switchover", {"mode": "inference"})

    assert not isinstance(err.value, ServiceValidationError)
    assert err.value.translation_placeholders["code"] == "comfyui.arbiter_unavailable"


async def test_unknown_config_entry_is_a_validation_error(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "switchover", {"mode": "generation", "config_entry_id": "nope"})

    assert err.value.translation_key == "entry_not_found"


async def test_unloaded_config_entry_is_a_validation_error(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    await hass.config_entries.async_unload(entry.entry_id)

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "switchover", {"mode": "generation", "config_entry_id": entry.entry_id})

    assert err.value.translation_key == "entry_not_loaded"


async def test_two_bridges_need_an_explicit_target(hass: HomeAssistant, bridge: RunningBridge, make_bridge) -> None:
    await setup_entry(hass, bridge)
    await setup_entry(hass, await make_bridge(node_id="othernode"))

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "switchover", {"mode": "generation"})

    assert err.value.translation_key == "entry_required"


async def test_explicit_target_picks_that_bridge(hass: HomeAssistant, bridge: RunningBridge, make_bridge) -> None:
    await setup_entry(hass, bridge)
    other = await setup_entry(hass, await make_bridge(node_id="othernode"))

    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "switchover", {"mode": "inference", "config_entry_id": other.entry_id})

    assert err.value.translation_placeholders["code"] == "comfyui.arbiter_unavailable"


async def test_bridge_gone_during_a_call_is_cannot_connect(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)
    await bridge.stop()

    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "switchover", {"mode": "generation"})

    assert err.value.translation_key == "cannot_connect"


async def test_token_rejected_at_run_time_starts_reauth(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    await bridge.stop()
    bridge.raw_config["server"]["token"] = "rotated-token"
    await bridge.start()

    with pytest.raises(HomeAssistantError) as err:
        await _call(hass, "switchover", {"mode": "generation"})

    assert err.value.translation_key == "invalid_auth"
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [(f["context"]["source"], f["context"]["entry_id"]) for f in flows] == [
        (config_entries.SOURCE_REAUTH, entry.entry_id)
    ]
    assert entry.data[CONF_TOKEN] != "rotated-token"


async def test_foreign_config_entry_is_not_a_target(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)
    foreign = MockConfigEntry(domain="other_domain")
    foreign.add_to_hass(hass)

    with pytest.raises(ServiceValidationError) as err:
        await _call(hass, "switchover", {"mode": "generation", "config_entry_id": foreign.entry_id})

    assert err.value.translation_key == "entry_not_found"
