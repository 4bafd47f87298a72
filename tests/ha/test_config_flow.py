"""Config flow against a real bridge: user step, every error, duplicate, reauth, reconfigure."""

from __future__ import annotations

from aiohttp import web
from homeassistant import config_entries
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType

from custom_components.hal0.const import DOMAIN

from .conftest import TOKEN, RunningBridge, add_entry, free_port


async def _user_flow(hass: HomeAssistant, host: str, port: int, token: str) -> dict:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    return await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: host, CONF_PORT: port, CONF_TOKEN: token}
    )


async def test_user_step_creates_entry_named_after_node(hass: HomeAssistant, bridge: RunningBridge) -> None:
    result = await _user_flow(hass, "127.0.0.1", bridge.port, TOKEN)

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == f"hal0 {bridge.node_id}"
    assert result["data"] == {CONF_HOST: "127.0.0.1", CONF_PORT: bridge.port, CONF_TOKEN: TOKEN}
    assert result["result"].unique_id == bridge.node_id


async def test_user_step_names_cannot_connect_for_closed_port(hass: HomeAssistant, socket_enabled: None) -> None:
    result = await _user_flow(hass, "127.0.0.1", free_port(), TOKEN)

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}


async def test_user_step_names_cannot_connect_for_a_server_that_is_not_a_bridge(
    hass: HomeAssistant, socket_enabled: None
) -> None:
    async def info(_request: web.Request) -> web.Response:
        return web.json_response({"name": "something-else"})

    other = web.Application()
    other.router.add_get("/api/info", info)
    runner = web.AppRunner(other)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        result = await _user_flow(hass, "127.0.0.1", port, TOKEN)
    finally:
        await runner.cleanup()

    assert result["errors"] == {"base": "cannot_connect"}


async def test_user_step_names_invalid_auth_for_wrong_token(hass: HomeAssistant, bridge: RunningBridge) -> None:
    result = await _user_flow(hass, "127.0.0.1", bridge.port, "wrong-token")

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}


async def test_user_step_names_invalid_auth_for_missing_token(hass: HomeAssistant, bridge: RunningBridge) -> None:
    result = await _user_flow(hass, "127.0.0.1", bridge.port, "")

    assert result["errors"] == {"base": "invalid_auth"}


async def test_user_step_recovers_after_an_error(hass: HomeAssistant, bridge: RunningBridge) -> None:
    result = await _user_flow(hass, "127.0.0.1", bridge.port, "wrong-token")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: bridge.port, CONF_TOKEN: TOKEN}
    )

    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_bridge_without_token_needs_none(hass: HomeAssistant, make_bridge) -> None:
    open_bridge = await make_bridge(token="")

    result = await _user_flow(hass, "127.0.0.1", open_bridge.port, "")

    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_second_entry_for_same_node_aborts_and_updates_address(
    hass: HomeAssistant, bridge: RunningBridge
) -> None:
    entry = add_entry(hass, bridge, **{CONF_PORT: 1})

    result = await _user_flow(hass, "127.0.0.1", bridge.port, TOKEN)

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert entry.data[CONF_PORT] == bridge.port


async def test_rejected_token_at_setup_starts_reauth(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = add_entry(hass, bridge, **{CONF_TOKEN: "old-token"})

    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.SETUP_ERROR
    flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
    assert [f["context"]["source"] for f in flows] == [config_entries.SOURCE_REAUTH]


async def test_reauth_with_new_token_updates_entry_and_loads_it(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = add_entry(hass, bridge, **{CONF_TOKEN: "old-token"})
    result = await entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert entry.data[CONF_TOKEN] == TOKEN
    assert entry.state is ConfigEntryState.LOADED


async def test_reauth_with_wrong_token_shows_invalid_auth(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = add_entry(hass, bridge, **{CONF_TOKEN: "old-token"})
    result = await entry.start_reauth_flow(hass)

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: "still-wrong"})

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "invalid_auth"}


async def test_reauth_against_another_node_aborts(hass: HomeAssistant, bridge: RunningBridge, make_bridge) -> None:
    other = await make_bridge(node_id="othernode")
    entry = add_entry(hass, bridge, **{CONF_PORT: other.port, CONF_TOKEN: "old-token"})
    result = await entry.start_reauth_flow(hass)

    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_TOKEN: TOKEN})

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_bridge"


async def test_reconfigure_moves_entry_to_new_address(hass: HomeAssistant, bridge: RunningBridge, make_bridge) -> None:
    entry = add_entry(hass, bridge)
    moved = await make_bridge()  # the same node, now on another port
    result = await entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: moved.port, CONF_TOKEN: TOKEN}
    )
    await hass.async_block_till_done()

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.data[CONF_PORT] == moved.port
    assert entry.state is ConfigEntryState.LOADED


async def test_reconfigure_to_another_node_aborts(hass: HomeAssistant, bridge: RunningBridge, make_bridge) -> None:
    entry = add_entry(hass, bridge)
    other = await make_bridge(node_id="othernode")
    result = await entry.start_reconfigure_flow(hass)

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: other.port, CONF_TOKEN: TOKEN}
    )

    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_bridge"
    assert entry.data[CONF_PORT] == bridge.port


async def test_reconfigure_names_cannot_connect(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = add_entry(hass, bridge)
    result = await entry.start_reconfigure_flow(hass)

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: free_port(), CONF_TOKEN: TOKEN}
    )

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_connect"}
