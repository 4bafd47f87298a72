"""Options flow: image defaults, saved and reloaded, and used by hal0.generate_image and ai_task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from homeassistant.components import ai_task
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.hal0.const import DOMAIN

from .conftest import RunningBridge, add_entry, setup_entry

OPTIONS = {"model": "sd-1.5-pruned-emaonly", "size": "64x96", "steps": 3, "negative_prompt": "blurry"}


async def _set_options(hass: HomeAssistant, entry: Any, user_input: dict[str, Any]) -> dict[str, Any]:
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "init"
    return await hass.config_entries.options.async_configure(result["flow_id"], user_input)


async def test_options_offer_the_bridges_models_and_are_saved_with_a_reload(
    hass: HomeAssistant, bridge: RunningBridge
) -> None:
    entry = await setup_entry(hass, bridge)
    first = entry.runtime_data
    result = await hass.config_entries.options.async_init(entry.entry_id)
    model_field = next(k for k in result["data_schema"].schema if k == "model")
    assert result["data_schema"].schema[model_field].config["options"] == ["sdxl-turbo", "sd-1.5-pruned-emaonly"]

    result = await hass.config_entries.options.async_configure(result["flow_id"], OPTIONS)
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == OPTIONS
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data is not first  # OptionsFlowWithReload reloaded the entry


async def test_empty_fields_are_not_stored(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)

    result = await _set_options(hass, entry, {"size": "  ", "negative_prompt": ""})

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {}


async def test_a_malformed_size_is_named(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)

    result = await _set_options(hass, entry, {"size": "huge"})

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"size": "invalid_size"}


async def test_options_need_a_loaded_bridge(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = add_entry(hass, bridge)

    result = await hass.config_entries.options.async_init(entry.entry_id)

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "not_loaded"


async def test_generate_image_uses_the_options(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, full_bridge)
    await _set_options(hass, entry, OPTIONS)
    await hass.async_block_till_done()

    answer = await hass.services.async_call(
        DOMAIN, "generate_image", {"prompt": "a lighthouse"}, blocking=True, return_response=True
    )

    assert (answer["model"], answer["size"], answer["steps"]) == ("sd-1.5-pruned-emaonly", "64x96", 3)
    # the negative prompt reached the graph ComfyUI ran: its own history keeps the prompt
    comfy = full_bridge.raw_config["comfyui"]["url"]
    async with aiohttp.ClientSession() as session, session.get(f"{comfy}/history/{answer['prompt_id']}") as resp:
        history = await resp.text()
    assert "blurry" in history


async def test_a_call_that_names_another_model_gets_that_models_own_size_and_steps(
    hass: HomeAssistant, full_bridge: RunningBridge
) -> None:
    entry = await setup_entry(hass, full_bridge)
    await _set_options(hass, entry, OPTIONS)
    await hass.async_block_till_done()

    answer = await hass.services.async_call(
        DOMAIN, "generate_image", {"prompt": "a lighthouse", "model": "sdxl-turbo", "size": "64x64"},
        blocking=True, return_response=True,
    )  # fmt: skip

    assert (answer["model"], answer["size"], answer["steps"]) == ("sdxl-turbo", "64x64", 4)


async def test_ai_task_uses_the_options(hass: HomeAssistant, full_bridge: RunningBridge, tmp_path: Path) -> None:
    entry = await setup_entry(hass, full_bridge)
    await _set_options(hass, entry, OPTIONS)
    await hass.async_block_till_done()
    entity_id = next(s.entity_id for s in hass.states.async_all("ai_task"))

    result = await ai_task.async_generate_image(
        hass, task_name="t", entity_id=entity_id, instructions="a lighthouse"
    )

    assert result["model"] == "sd-1.5-pruned-emaonly"
    assert (result["width"], result["height"]) == (64, 96)
