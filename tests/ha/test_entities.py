"""Entities against a real bridge with process slots: states before and after a switchover, and
select/switch/button commands reaching the bridge."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from homeassistant.const import ATTR_ENTITY_ID, ATTR_UNIT_OF_MEASUREMENT, STATE_OFF, STATE_ON, STATE_UNKNOWN
from homeassistant.core import Event, EventStateChangedData, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.util import dt as dt_util

from custom_components.hal0.const import DOMAIN

from .conftest import RunningBridge, first_start_done, full_config, setup_entry, wait_until


def eid(hass: HomeAssistant, platform: str, key: str, node: str = "testnode") -> str:
    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"{node}_{key}")
    assert entity_id is not None, f"no {platform} entity {key}"
    return entity_id


def state(hass: HomeAssistant, platform: str, key: str) -> str:
    return hass.states.get(eid(hass, platform, key)).state


async def switch_to(hass: HomeAssistant, running: RunningBridge, mode: str) -> None:
    await hass.services.async_call(
        "select", "select_option", {ATTR_ENTITY_ID: eid(hass, "select", "gpu_mode"), "option": mode}, blocking=True
    )
    status = running.bridge.hub
    await wait_until(
        lambda: status.status.mode == mode and not status.status.switchover.active, f"bridge finished switching to {mode}"
    )
    await wait_until(
        lambda: state(hass, "select", "gpu_mode") == mode and state(hass, "binary_sensor", "switching") == STATE_OFF,
        f"entities show the finished switch to {mode}",
    )


async def standin_state(running: RunningBridge) -> dict:
    url = running.raw_config["comfyui"]["url"]
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_standin/state") as resp:
        return await resp.json()


async def configure_standin(running: RunningBridge, **settings: object) -> None:
    url = running.raw_config["comfyui"]["url"]
    async with aiohttp.ClientSession() as session, session.post(f"{url}/_standin/config", json=settings) as resp:
        resp.raise_for_status()


async def test_states_in_inference_before_any_switch(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)

    assert state(hass, "select", "gpu_mode") == "inference"
    assert state(hass, "sensor", "engine") == "stopped"
    assert state(hass, "binary_sensor", "reachable") == STATE_OFF
    assert state(hass, "binary_sensor", "switching") == STATE_OFF
    assert state(hass, "switch", "pin") == STATE_OFF
    assert state(hass, "sensor", "queue_running") == "0"
    assert state(hass, "sensor", "queue_pending") == "0"
    assert state(hass, "sensor", "llm_in_flight") == "0"
    assert state(hass, "sensor", "llm_queued") == "0"
    assert state(hass, "sensor", "gtt_used") == STATE_UNKNOWN
    assert state(hass, "sensor", "progress") == "0"
    assert state(hass, "sensor", "idle_restore_at") == STATE_UNKNOWN


async def test_selecting_generation_switches_the_bridge(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)

    await switch_to(hass, full_bridge, "generation")

    assert full_bridge.bridge.hub.status.mode == "generation"


async def test_states_after_switch_to_generation(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)

    await switch_to(hass, full_bridge, "generation")
    await wait_until(lambda: state(hass, "sensor", "gtt_used") != STATE_UNKNOWN, "memory gauge filled")

    assert state(hass, "sensor", "engine") == "running"
    assert state(hass, "binary_sensor", "reachable") == STATE_ON
    memory = full_bridge.bridge.hub.status.memory
    gtt = hass.states.get(eid(hass, "sensor", "gtt_used"))
    assert gtt.attributes[ATTR_UNIT_OF_MEASUREMENT] == "GiB"
    assert float(gtt.state) == pytest.approx(memory.gtt_used / 2**30)
    assert float(state(hass, "sensor", "ram_total")) == pytest.approx(memory.ram_total / 2**30)


async def test_switching_sensor_is_on_while_the_switch_runs(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    seen: list[str] = []

    @callback
    def record(event: Event[EventStateChangedData]) -> None:
        seen.append(event.data["new_state"].state)

    unsub = async_track_state_change_event(hass, eid(hass, "binary_sensor", "switching"), record)
    await switch_to(hass, full_bridge, "generation")
    await hass.async_block_till_done()  # the last state change's listeners have run
    unsub()

    assert seen == [STATE_ON, STATE_OFF]
    attrs = hass.states.get(eid(hass, "binary_sensor", "switching")).attributes
    assert (attrs["target"], attrs["error"], attrs["trigger"]) == ("generation", None, "api")


async def test_switch_back_to_inference_keeps_comfyui_up_and_frees_it(
    hass: HomeAssistant, full_bridge: RunningBridge
) -> None:
    await setup_entry(hass, full_bridge)
    await switch_to(hass, full_bridge, "generation")

    await switch_to(hass, full_bridge, "inference")

    assert full_bridge.bridge.hub.status.container == "running"
    await wait_until(lambda: state(hass, "binary_sensor", "reachable") == STATE_ON, "ComfyUI still reachable")
    assert (await standin_state(full_bridge))["counters"]["free_calls"] >= 1


async def test_pin_switch_pins_the_bridge(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    await switch_to(hass, full_bridge, "generation")

    await hass.services.async_call("switch", "turn_on", {ATTR_ENTITY_ID: eid(hass, "switch", "pin")}, blocking=True)

    assert full_bridge.bridge.hub.status.pinned is True
    await wait_until(lambda: state(hass, "switch", "pin") == STATE_ON, "pin pushed on")


async def test_pin_switch_off_unpins_the_bridge(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    await switch_to(hass, full_bridge, "generation")
    await hass.services.async_call("switch", "turn_on", {ATTR_ENTITY_ID: eid(hass, "switch", "pin")}, blocking=True)

    await hass.services.async_call("switch", "turn_off", {ATTR_ENTITY_ID: eid(hass, "switch", "pin")}, blocking=True)

    assert full_bridge.bridge.hub.status.pinned is False
    await wait_until(lambda: state(hass, "switch", "pin") == STATE_OFF, "pin pushed off")


async def test_cancel_button_interrupts_the_running_render(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    await switch_to(hass, full_bridge, "generation")
    await configure_standin(full_bridge, step_seconds=0.2)
    render = asyncio.create_task(
        hass.services.async_call(
            DOMAIN, "generate_image", {"prompt": "a slow cat", "size": "64x64", "steps": 50}, blocking=True,
            return_response=True,
        )  # fmt: skip
    )
    await wait_until(lambda: float(state(hass, "sensor", "progress")) > 0, "render progress pushed")
    assert state(hass, "sensor", "engine") == "generating"
    assert state(hass, "sensor", "queue_running") == "1"

    await hass.services.async_call(
        "button", "press", {ATTR_ENTITY_ID: eid(hass, "button", "cancel_renders")}, blocking=True
    )

    with pytest.raises(HomeAssistantError):
        await render
    assert (await standin_state(full_bridge))["counters"]["prompts_interrupted"] == 1


async def test_bridge_refusal_of_a_command_is_a_translated_error(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    await switch_to(hass, full_bridge, "generation")
    await configure_standin(full_bridge, step_seconds=0.2)
    render = asyncio.create_task(
        hass.services.async_call(DOMAIN, "generate_image", {"prompt": "busy", "size": "64x64", "steps": 50}, blocking=True)
    )
    await wait_until(lambda: state(hass, "sensor", "queue_running") == "1", "render running")

    with pytest.raises(HomeAssistantError) as err:
        await hass.services.async_call(
            "select", "select_option", {ATTR_ENTITY_ID: eid(hass, "select", "gpu_mode"), "option": "inference"},
            blocking=True,
        )  # fmt: skip

    assert err.value.translation_placeholders["code"] == "comfyui.busy"
    await hass.services.async_call(
        "button", "press", {ATTR_ENTITY_ID: eid(hass, "button", "cancel_renders")}, blocking=True
    )
    with pytest.raises(HomeAssistantError):
        await render


async def test_switchover_action_answers_switching_then_noop(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)

    first = await hass.services.async_call(
        DOMAIN, "switchover", {"mode": "generation", "pin": True}, blocking=True, return_response=True
    )
    await wait_until(lambda: full_bridge.bridge.hub.status.mode == "generation", "bridge in generation")
    await wait_until(lambda: not full_bridge.bridge.hub.status.switchover.active, "switch finished")
    second = await hass.services.async_call(
        DOMAIN, "switchover", {"mode": "generation"}, blocking=True, return_response=True
    )

    assert first == {"status": "switching", "mode": "generation"}
    assert second == {"status": "noop", "mode": "generation"}
    assert full_bridge.bridge.hub.status.pinned is True


async def test_arbiter_entities_absent_without_arbiter(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)

    platforms = {e.domain for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)}

    assert "select" not in platforms
    assert "switch" not in platforms
    assert {"sensor", "binary_sensor", "button", "image", "ai_task"} <= platforms


async def test_slot_sensor_is_disabled_by_default(hass: HomeAssistant, bridge: RunningBridge) -> None:
    await setup_entry(hass, bridge)

    entry = er.async_get(hass).async_get(eid(hass, "sensor", "container"))

    assert entry.disabled_by is er.RegistryEntryDisabler.INTEGRATION


async def test_idle_restore_sensor_shows_when_the_gpu_goes_back(hass: HomeAssistant, make_bridge, tmp_path) -> None:
    config = full_config(tmp_path)
    config["image"]["idle_restore_minutes"] = 60
    running = await make_bridge(config=config)
    await first_start_done(running)
    await setup_entry(hass, running)

    await switch_to(hass, running, "generation")
    await wait_until(lambda: running.bridge.hub.status.idle_restore_at is not None, "bridge set a deadline")

    expected = dt_util.utc_from_timestamp(running.bridge.hub.status.idle_restore_at).replace(microsecond=0)
    await wait_until(
        lambda: dt_util.parse_datetime(state(hass, "sensor", "idle_restore_at") or "") == expected,
        "deadline pushed to the sensor",
    )
