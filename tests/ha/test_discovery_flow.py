"""Found without typing a URL: zeroconf and MQTT discovery, the confirm step, and the update of an
entry whose bridge moved (discovery-update-info).

The zeroconf records come from a real bridge announcing itself on loopback, browsed with the
zeroconf library and turned into Home Assistant's ZeroconfServiceInfo by HA's own converter. The MQTT
payload is what the real bridge publishes on ``hal0/bridge/info``, delivered through HA's MQTT
integration (``mqtt_mock``: HA's MQTT code with the broker connection mocked).
"""

from __future__ import annotations

import asyncio
import json
from ipaddress import ip_address
from typing import Any

import pytest
from homeassistant import config_entries
from homeassistant.components.zeroconf.discovery import info_from_service
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
from pytest_homeassistant_custom_component.common import async_fire_mqtt_message
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from custom_components.hal0.const import DOMAIN, MQTT_INFO_TOPIC, ZEROCONF_TYPE

from .conftest import NODE_ID, TOKEN, RunningBridge, add_entry, base_config, free_port, wait_until


def _info_payload(running: RunningBridge) -> str:
    """Exactly what the bridge publishes, retained, on hal0/bridge/info."""
    return json.dumps(running.bridge.commands.info())


def _mqtt_info(payload: str) -> MqttServiceInfo:
    return MqttServiceInfo(
        topic=MQTT_INFO_TOPIC, payload=payload, qos=1, retain=True, subscribed_topic=MQTT_INFO_TOPIC, timestamp=0.0
    )


def _zeroconf_info(running: RunningBridge, **overrides: Any) -> ZeroconfServiceInfo:
    fields: dict[str, Any] = {
        "ip_address": ip_address(running.host),
        "ip_addresses": [ip_address(running.host)],
        "port": running.port,
        "hostname": f"{NODE_ID}.local.",
        "type": ZEROCONF_TYPE,
        "name": f"hal0 {NODE_ID}.{ZEROCONF_TYPE}",
        "properties": {"node_id": running.node_id, "version": "0.1.0", "api_version": "2", "auth": "1"},
    }
    return ZeroconfServiceInfo(**(fields | overrides))


async def _browse(timeout: float = 15.0) -> ZeroconfServiceInfo:
    """The bridge's announcement as HA's zeroconf integration would hand it to the flow."""
    zc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    names: list[str] = []
    browser = AsyncServiceBrowser(zc.zeroconf, ZEROCONF_TYPE, handlers=[lambda **kw: names.append(kw["name"])])
    try:
        async with asyncio.timeout(timeout):
            while not names:
                await asyncio.sleep(0.05)
        service = AsyncServiceInfo(ZEROCONF_TYPE, names[0])
        assert await service.async_request(zc.zeroconf, 3000)
    finally:
        await browser.async_cancel()
        await zc.async_close()
    info = info_from_service(service)
    assert info is not None
    return info


# --------------------------------------------------------------------------------- zeroconf


async def test_a_bridge_announced_over_mdns_is_added_after_confirming(hass: HomeAssistant, make_bridge, tmp_path) -> None:
    config = base_config(tmp_path)
    config["server"]["zeroconf"] = True  # loopback binds are not announced by default
    running = await make_bridge(config=config)
    discovered = await _browse()
    assert discovered.port == running.port and discovered.properties["node_id"] == running.node_id

    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=discovered
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"] == {"name": NODE_ID, "host": "127.0.0.1", "port": str(running.port)}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"hal0 {NODE_ID}"
    assert result["data"] == {CONF_HOST: "127.0.0.1", CONF_PORT: running.port, CONF_TOKEN: TOKEN}
    assert result["result"].unique_id == running.node_id
    assert result["result"].state is ConfigEntryState.LOADED


async def test_the_confirm_step_names_a_wrong_token(hass: HomeAssistant, bridge: RunningBridge) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=_zeroconf_info(bridge)
    )

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: "wrong"})
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_the_confirm_step_asks_no_token_of_a_bridge_without_one(hass: HomeAssistant, make_bridge) -> None:
    open_bridge = await make_bridge(token="")
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=_zeroconf_info(open_bridge)
    )
    assert list(result["data_schema"].schema) == []

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"][CONF_TOKEN] == ""


async def test_a_configured_bridge_that_moved_gets_its_new_address(
    hass: HomeAssistant, bridge: RunningBridge, make_bridge
) -> None:
    entry = add_entry(hass, bridge, **{CONF_PORT: 1})  # the old address
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.SETUP_RETRY

    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=_zeroconf_info(bridge)
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == bridge.port
    assert entry.state is ConfigEntryState.LOADED  # reloaded at the new address


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [({"properties": {"version": "0.1.0"}}, "not_hal0_bridge"), ({"port": None}, "no_address")],
    ids=["no_node_id", "no_port"],
)
async def test_an_announcement_without_what_we_need_is_ignored(
    hass: HomeAssistant, bridge: RunningBridge, overrides: dict[str, Any], reason: str
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=_zeroconf_info(bridge, **overrides)
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason


async def test_an_announced_bridge_that_does_not_answer_is_not_offered(hass: HomeAssistant, bridge: RunningBridge) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=_zeroconf_info(bridge, port=free_port())
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "cannot_connect"


async def test_an_announcement_whose_address_answers_as_another_node_aborts(
    hass: HomeAssistant, bridge: RunningBridge
) -> None:
    info = _zeroconf_info(bridge, properties={"node_id": "some-other-node"})

    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=info)

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_bridge"


# --------------------------------------------------------------------------------- MQTT


@pytest.mark.parametrize("expected_lingering_timers", [True])
async def test_the_retained_bridge_info_on_mqtt_offers_the_bridge(
    hass: HomeAssistant, bridge: RunningBridge, mqtt_mock: Any
) -> None:
    async_fire_mqtt_message(hass, MQTT_INFO_TOPIC, _info_payload(bridge), retain=True)
    # HA starts discovery flows as background tasks
    await wait_until(lambda: hass.config_entries.flow.async_progress_by_handler(DOMAIN), "a discovery flow")

    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [(f["context"]["source"], f["step_id"]) for f in flows] == [(config_entries.SOURCE_MQTT, "discovery_confirm")]
    assert flows[0]["context"]["unique_id"] == bridge.node_id

    result = await hass.config_entries.flow.async_configure(flows[0]["flow_id"], {CONF_TOKEN: TOKEN})
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_HOST: "127.0.0.1", CONF_PORT: bridge.port, CONF_TOKEN: TOKEN}


async def test_mqtt_discovery_of_a_configured_bridge_updates_its_address(
    hass: HomeAssistant, bridge: RunningBridge
) -> None:
    entry = add_entry(hass, bridge, **{CONF_HOST: "192.0.2.1", CONF_PORT: 1})

    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_MQTT}, data=_mqtt_info(_info_payload(bridge))
    )
    await hass.async_block_till_done()

    assert result["reason"] == "already_configured"
    assert (entry.data[CONF_HOST], entry.data[CONF_PORT]) == ("127.0.0.1", bridge.port)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "not_hal0_bridge"),  # the retained message was cleared
        ("not json", "not_hal0_bridge"),
        (json.dumps({"name": "zigbee2mqtt", "node_id": "x"}), "not_hal0_bridge"),
        (json.dumps({"name": "hal0-bridge", "node_id": "x", "api_url": "http://0.0.0.0:8080"}), "no_address"),
        (json.dumps({"name": "hal0-bridge", "node_id": "x", "api_url": "https://gpu.example:443"}), "no_address"),
        (json.dumps({"name": "hal0-bridge", "node_id": "x", "api_url": "http://[::1"}), "no_address"),
    ],
    ids=["cleared", "not_json", "not_a_bridge", "wildcard", "https", "bad_url"],
)
async def test_mqtt_payloads_without_a_usable_bridge_are_ignored(
    hass: HomeAssistant, socket_enabled: None, payload: str, reason: str
) -> None:
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_MQTT}, data=_mqtt_info(payload)
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == reason


async def test_the_same_bridge_found_twice_is_offered_once(hass: HomeAssistant, bridge: RunningBridge) -> None:
    first = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_ZEROCONF}, data=_zeroconf_info(bridge)
    )
    second = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": config_entries.SOURCE_MQTT}, data=_mqtt_info(_info_payload(bridge))
    )

    assert first["type"] is FlowResultType.FORM
    assert second["type"] is FlowResultType.ABORT
    assert second["reason"] == "already_in_progress"
    await wait_until(lambda: len(hass.config_entries.flow.async_progress_by_handler(DOMAIN)) == 1, "one flow")
