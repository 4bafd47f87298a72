"""Repair issues against a real bridge: created when the condition holds, gone when it is fixed.

API version newer/older than supported (the bridge reports another ``API_VERSION``), idle-restore
failing again and again (a real LLM slot process that refuses to start), and the bridge's own MQTT
discovery on, fixed through the bridge's API by the repair's fix flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component

from custom_components.hal0.const import DOMAIN

from .conftest import RunningBridge, add_entry, base_config, free_port, full_config, setup_entry, wait_until


def _issue(hass: HomeAssistant, key: str, entry: Any) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{key}_{entry.entry_id}")


@pytest.fixture
async def repairs(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, "repairs", {})


# ------------------------------------------------------------------------------ API version


async def test_a_newer_bridge_api_works_and_raises_an_issue(
    hass: HomeAssistant, make_bridge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hal0_bridge.commands.API_VERSION", 99)
    newer = await make_bridge()

    entry = await setup_entry(hass, newer)

    issue = _issue(hass, "api_too_new", entry)
    assert issue is not None and not issue.is_fixable
    assert issue.translation_placeholders["version"] == "99"
    assert _issue(hass, "api_too_old", entry) is None


async def test_an_older_bridge_api_waits_for_an_update_and_the_issue_goes_with_it(
    hass: HomeAssistant, make_bridge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hal0_bridge.commands.API_VERSION", 0)
    older = await make_bridge()
    entry = add_entry(hass, older)

    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.SETUP_RETRY
    issue = _issue(hass, "api_too_old", entry)
    assert issue is not None and issue.severity is ir.IssueSeverity.ERROR

    monkeypatch.setattr("hal0_bridge.commands.API_VERSION", 2)  # the bridge was updated
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()

    assert entry.state is ConfigEntryState.LOADED
    assert _issue(hass, "api_too_old", entry) is None


async def test_removing_the_entry_removes_its_issues(
    hass: HomeAssistant, make_bridge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hal0_bridge.commands.API_VERSION", 99)
    entry = await setup_entry(hass, await make_bridge())
    assert _issue(hass, "api_too_new", entry) is not None

    await hass.config_entries.async_remove(entry.entry_id)

    assert _issue(hass, "api_too_new", entry) is None


# ------------------------------------------------------------------------------ MQTT discovery


def _mqtt_config(tmp_path: Path) -> dict[str, Any]:
    """MQTT on with discovery on; no broker needs to listen (the bridge retries in the background)."""
    config = base_config(tmp_path)
    config["mqtt"] |= {"host": "127.0.0.1", "port": free_port(), "discovery": True, "connect_timeout": 1.0}
    return config


async def test_the_bridges_own_mqtt_discovery_is_an_issue_fixed_through_its_api(
    hass: HomeAssistant, repairs: None, make_bridge: Any, tmp_path: Path
) -> None:
    running = await make_bridge(config=_mqtt_config(tmp_path))
    entry = await setup_entry(hass, running)
    issue = _issue(hass, "mqtt_discovery_on", entry)
    assert issue is not None and issue.is_fixable

    manager = repairs_flow_manager(hass)
    assert manager is not None
    flow = await manager.async_init(DOMAIN, data={"issue_id": issue.issue_id})
    assert flow["step_id"] == "confirm"
    result = await manager.async_configure(flow["flow_id"], {})

    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert _issue(hass, "mqtt_discovery_on", entry) is None
    assert running.bridge.discovery.enabled is False
    assert running.bridge.commands.info()["mqtt"]["discovery"] is False
    # a reload (or a restart of the bridge: the choice is stored) brings no issue back
    await hass.config_entries.async_reload(entry.entry_id)
    await hass.async_block_till_done()
    assert _issue(hass, "mqtt_discovery_on", entry) is None


async def test_the_fix_flow_names_a_bridge_that_refuses(
    hass: HomeAssistant, repairs: None, make_bridge: Any, tmp_path: Path
) -> None:
    running = await make_bridge(config=_mqtt_config(tmp_path))
    entry = await setup_entry(hass, running)
    issue = _issue(hass, "mqtt_discovery_on", entry)
    assert issue is not None
    manager = repairs_flow_manager(hass)
    assert manager is not None
    flow = await manager.async_init(DOMAIN, data={"issue_id": issue.issue_id})
    await running.stop()  # the bridge is gone when the user confirms

    result = await manager.async_configure(flow["flow_id"], {})

    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "cannot_turn_off"}
    assert _issue(hass, "mqtt_discovery_on", entry) is not None


async def test_an_older_bridge_gets_the_issue_without_a_fix_button(
    hass: HomeAssistant, make_bridge: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hal0_bridge.commands.API_VERSION", 1)  # before POST /api/mqtt/discovery
    entry = await setup_entry(hass, await make_bridge(config=_mqtt_config(tmp_path)))

    issue = _issue(hass, "mqtt_discovery_on", entry)

    assert issue is not None and not issue.is_fixable


async def test_discovery_off_raises_no_issue(hass: HomeAssistant, make_bridge: Any, tmp_path: Path) -> None:
    config = _mqtt_config(tmp_path)
    config["mqtt"]["discovery"] = False

    entry = await setup_entry(hass, await make_bridge(config=config))

    assert _issue(hass, "mqtt_discovery_on", entry) is None


# ------------------------------------------------------------------------------ idle-restore


def _failing_llm_config(tmp_path: Path, flag: Path) -> dict[str, Any]:
    """Process slots; the LLM slot's process exits at once while ``flag`` exists (a broken model
    path, say), so switching back to inference fails for real."""
    config = full_config(tmp_path)
    llm = config["slots"]["llm"]
    llm["command"] = ["/bin/sh", "-c", f'[ -e "{flag}" ] && exit 3; exec "$0" "$@"', *llm["command"]]
    llm["autostart"] = True
    config["image"]["idle_restore_minutes"] = 0.02  # 1.2 s without image work
    return config


async def test_idle_restore_failing_repeatedly_is_an_issue_until_it_succeeds(
    hass: HomeAssistant, make_bridge: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "llm-broken"
    running = await make_bridge(config=_failing_llm_config(tmp_path, flag))
    entry = await setup_entry(hass, running)
    hub = running.bridge.hub
    await wait_until(lambda: any(s.name == "llm" and s.state == "ready" for s in hub.status.slots), "LLM up")
    flag.touch()
    await running.bridge.arbiter.request_switch("generation", force=False, pin=None, trigger="api")
    await wait_until(lambda: hub.status.idle_restore_failures >= 2, "idle-restore failed twice")

    await wait_until(lambda: _issue(hass, "idle_restore_failing", entry) is not None, "issue raised")
    issue = _issue(hass, "idle_restore_failing", entry)
    assert issue is not None and issue.severity is ir.IssueSeverity.ERROR
    assert "LLM slot did not start" in issue.translation_placeholders["error"]

    flag.unlink()  # the slot is fixed; the next idle-restore succeeds
    await wait_until(lambda: hub.status.mode == "inference" and hub.status.idle_restore_failures == 0, "restored")
    await wait_until(lambda: _issue(hass, "idle_restore_failing", entry) is None, "issue gone")


async def test_one_failed_idle_restore_is_no_issue_yet(hass: HomeAssistant, bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, bridge)
    await wait_until(lambda: entry.runtime_data.streaming, "stream up")

    bridge.bridge.hub.update(idle_restore_failures=1)
    await wait_until(lambda: entry.runtime_data.data.idle_restore_failures == 1, "pushed")

    assert _issue(hass, "idle_restore_failing", entry) is None
