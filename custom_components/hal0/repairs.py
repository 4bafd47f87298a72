"""Repair issues for conditions a user can act on, and the one fix flow.

- ``api_too_old``: the bridge speaks an API older than this integration needs (setup waits for it).
- ``api_too_new``: the bridge is newer than this integration knows (it works; update the integration).
- ``idle_restore_failing``: the bridge's idle-restore back to inference failed several times in a row;
  the issue quotes the bridge's switchover error.
- ``mqtt_discovery_on``: the bridge's own MQTT discovery duplicates this integration's entities. The
  fix flow turns it off through the bridge's API (``POST /api/mqtt/discovery``, API version 2); an
  older bridge gets the same issue without the button, telling how to turn it off in its config.

Issue ids carry the entry id, so two bridges get two issues; each issue is deleted as soon as its
condition is gone, and all of an entry's issues when the entry is removed.
"""

from __future__ import annotations

from dataclasses import replace

import voluptuous as vol

from homeassistant.components.repairs import ConfirmRepairFlow, RepairsFlow
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import FlowResult
from homeassistant.helpers import issue_registry as ir

from .api import BridgeInfo, Hal0Error, Status
from .const import (
    DOMAIN,
    IDLE_RESTORE_FAILURES_FOR_ISSUE,
    ISSUE_API_TOO_NEW,
    ISSUE_API_TOO_OLD,
    ISSUE_IDLE_RESTORE_FAILING,
    ISSUE_MQTT_DISCOVERY_ON,
    LOGGER,
    MAX_API_VERSION,
    MIN_API_VERSION,
    MQTT_DISCOVERY_API_VERSION,
)

ALL_ISSUES = (ISSUE_API_TOO_OLD, ISSUE_API_TOO_NEW, ISSUE_IDLE_RESTORE_FAILING, ISSUE_MQTT_DISCOVERY_ON)
DOCS = "https://github.com/hal0/hal0-bridge/blob/main/docs/home-assistant.md"


def issue_id(key: str, entry_id: str) -> str:
    return f"{key}_{entry_id}"


@callback
def _set_issue(
    hass: HomeAssistant,
    key: str,
    entry_id: str,
    active: bool,
    *,
    severity: ir.IssueSeverity = ir.IssueSeverity.WARNING,
    is_fixable: bool = False,
    placeholders: dict[str, str] | None = None,
    learn_more: str | None = None,
) -> None:
    if not active:
        ir.async_delete_issue(hass, DOMAIN, issue_id(key, entry_id))
        return
    ir.async_create_issue(
        hass,
        DOMAIN,
        issue_id(key, entry_id),
        is_fixable=is_fixable,
        severity=severity,
        translation_key=key,
        translation_placeholders=placeholders,
        learn_more_url=learn_more,
        data={"entry_id": entry_id},
    )


@callback
def async_check_bridge(hass: HomeAssistant, entry_id: str, title: str, info: BridgeInfo) -> bool:
    """Issues that follow from ``/api/info``; False when the bridge is too old to be used."""
    versions = {
        "name": title,
        "version": str(info.api_version),
        "min": str(MIN_API_VERSION),
        "max": str(MAX_API_VERSION),
        "bridge_version": info.version or "?",
    }
    too_old = info.api_version < MIN_API_VERSION
    _set_issue(hass, ISSUE_API_TOO_OLD, entry_id, too_old, severity=ir.IssueSeverity.ERROR, placeholders=versions)
    _set_issue(hass, ISSUE_API_TOO_NEW, entry_id, info.api_version > MAX_API_VERSION, placeholders=versions)
    _set_issue(
        hass,
        ISSUE_MQTT_DISCOVERY_ON,
        entry_id,
        info.mqtt_enabled and info.mqtt_discovery,
        is_fixable=info.api_version >= MQTT_DISCOVERY_API_VERSION,
        placeholders={"name": title},
        learn_more=f"{DOCS}#mqtt-discovery",
    )
    return not too_old


@callback
def async_check_status(hass: HomeAssistant, entry_id: str, title: str, status: Status) -> None:
    """Issues that follow from the status snapshot (on every update; creating is idempotent)."""
    failing = status.idle_restore_failures >= IDLE_RESTORE_FAILURES_FOR_ISSUE
    error = status.switchover.error if status.switchover.trigger == "idle" else None
    _set_issue(
        hass,
        ISSUE_IDLE_RESTORE_FAILING,
        entry_id,
        failing,
        severity=ir.IssueSeverity.ERROR,
        placeholders={"name": title, "count": str(status.idle_restore_failures), "error": error or "?"},
        learn_more=f"{DOCS}#troubleshooting",
    )


@callback
def async_delete_all(hass: HomeAssistant, entry_id: str) -> None:
    for key in ALL_ISSUES:
        ir.async_delete_issue(hass, DOMAIN, issue_id(key, entry_id))


class MqttDiscoveryFixFlow(RepairsFlow):
    """Turn the bridge's own MQTT discovery off; the bridge then removes its duplicate entities."""

    def __init__(self, entry_id: str) -> None:
        self._entry_id = entry_id

    async def async_step_init(self, user_input: dict[str, str] | None = None) -> FlowResult:
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, str] | None = None) -> FlowResult:
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None or entry.state is not ConfigEntryState.LOADED:
            return self.async_abort(reason="not_loaded")
        errors: dict[str, str] = {}
        if user_input is not None:
            coordinator = entry.runtime_data
            try:
                await coordinator.client.set_mqtt_discovery(False)
            except Hal0Error as err:
                LOGGER.debug("Turning off MQTT discovery of %s failed: %s", entry.title, err)
                errors["base"] = "cannot_turn_off"
            else:
                coordinator.info = replace(coordinator.info, mqtt_discovery=False)
                return self.async_create_entry(data={})  # finishing the flow deletes the issue
        return self.async_show_form(
            step_id="confirm", data_schema=vol.Schema({}), errors=errors, description_placeholders={"name": entry.title}
        )


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """Home Assistant asks for the flow behind a fixable issue's button."""
    entry_id = str((data or {}).get("entry_id", ""))
    if issue_id.startswith(f"{ISSUE_MQTT_DISCOVERY_ON}_"):
        return MqttDiscoveryFixFlow(entry_id)
    return ConfirmRepairFlow()  # every other issue is created without a fix flow
