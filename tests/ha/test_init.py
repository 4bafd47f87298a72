"""Setup, unload, push updates over /api/events, polling fallback, unavailability and recovery."""

from __future__ import annotations

import logging

import pytest
from hal0_bridge.status import LlmStatus
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_capture_events, async_fire_time_changed

from custom_components.hal0.const import DOMAIN, EVENT_HAL0, POLL_INTERVAL

from .conftest import RunningBridge, add_entry, free_port, setup_entry, wait_until

ENGINE = "sensor.hal0_testnode_engine"


async def test_setup_creates_one_device_for_the_bridge(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)

    devices = dr.async_entries_for_config_entry(dr.async_get(hass), entry.entry_id)
    assert [(d.identifiers, d.manufacturer, d.model) for d in devices] == [
        ({(DOMAIN, bridge.node_id)}, "hal0", "hal0-bridge")
    ]


async def test_setup_follows_the_event_stream_instead_of_polling(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    coordinator = entry.runtime_data

    await wait_until(lambda: coordinator.streaming, "the event stream is followed")

    assert coordinator.update_interval is None


async def test_setup_retries_while_bridge_is_down(hass: HomeAssistant, socket_enabled: None, tmp_path) -> None:
    running = RunningBridge({"mqtt": {"node_id": "testnode"}}, port=free_port())
    entry = add_entry(hass, running)

    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.SETUP_RETRY


async def test_setup_refuses_a_different_bridge_on_the_configured_address(
    hass: HomeAssistant, make_bridge
) -> None:
    other = await make_bridge(node_id="othernode")
    entry = add_entry(hass, other)
    hass.config_entries.async_update_entry(entry, unique_id="testnode")

    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.SETUP_ERROR


async def test_unload_stops_following_the_stream(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    hub = bridge.bridge.hub
    await wait_until(lambda: hub.subscriber_count == 1, "the bridge sees one SSE reader")

    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.NOT_LOADED
    await wait_until(lambda: hub.subscriber_count == 0, "the SSE reader is gone")


async def test_status_change_is_pushed_without_a_poll(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    await wait_until(lambda: entry.runtime_data.streaming, "stream up")
    assert hass.states.get(ENGINE).state == "stopped"

    # a source inside the bridge changes the snapshot; nothing in HA polls (update_interval is None)
    bridge.bridge.hub.update(engine="starting")

    await wait_until(lambda: hass.states.get(ENGINE).state == "starting", "engine pushed as starting")


async def test_llm_counts_are_pushed_to_their_sensors(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    await wait_until(lambda: entry.runtime_data.streaming, "stream up")
    assert hass.states.get("sensor.hal0_testnode_llm_requests_in_flight").state == "0"

    bridge.bridge.hub.update(llm=LlmStatus(in_flight=1, queued=4, models=("tiny",)))  # as the LLM proxy does

    await wait_until(lambda: hass.states.get("sensor.hal0_testnode_llm_requests_waiting").state == "4", "queued pushed")
    assert hass.states.get("sensor.hal0_testnode_llm_requests_in_flight").state == "1"


async def test_bridge_events_are_fired_on_the_bus(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    await wait_until(lambda: entry.runtime_data.streaming, "stream up")
    events = async_capture_events(hass, EVENT_HAL0)

    bridge.bridge.hub.emit("render_failed", code="image.upstream_failed", message="boom")

    await wait_until(lambda: len(events) == 1, "hal0_event fired")
    assert events[0].data["type"] == "render_failed"
    assert events[0].data["code"] == "image.upstream_failed"
    assert events[0].data["node_id"] == bridge.node_id


async def test_entities_go_unavailable_when_the_bridge_stops(
    hass: HomeAssistant, bridge: RunningBridge, caplog: pytest.LogCaptureFixture
) -> None:
    entry = await setup_entry(hass, bridge)
    await wait_until(lambda: entry.runtime_data.streaming, "stream up")

    await bridge.stop()

    await wait_until(lambda: hass.states.get(ENGINE).state == STATE_UNAVAILABLE, "engine unavailable")
    assert entry.runtime_data.update_interval == POLL_INTERVAL
    assert len([r for r in caplog.records if r.levelno == logging.ERROR and "hal0" in r.name]) == 1


async def test_entities_recover_when_the_bridge_is_back(
    hass: HomeAssistant, bridge: RunningBridge, caplog: pytest.LogCaptureFixture
) -> None:
    entry = await setup_entry(hass, bridge)
    coordinator = entry.runtime_data
    await wait_until(lambda: coordinator.streaming, "stream up")
    await bridge.stop()
    await wait_until(lambda: hass.states.get(ENGINE).state == STATE_UNAVAILABLE, "engine unavailable")

    await bridge.start()
    caplog.clear()
    async_fire_time_changed(hass, dt_util.utcnow() + POLL_INTERVAL)

    await wait_until(lambda: hass.states.get(ENGINE).state == "stopped", "engine available again")
    await wait_until(lambda: coordinator.streaming, "stream up again")
    assert "recovered" in caplog.text


async def test_bridge_without_token_works_with_empty_token(hass: HomeAssistant, make_bridge) -> None:
    open_bridge = await make_bridge(token="")

    entry = await setup_entry(hass, open_bridge, token="")

    assert entry.state is ConfigEntryState.LOADED
