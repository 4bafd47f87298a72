"""Config flow: add a bridge by host, port and token, tested before the entry exists.

One entry per bridge node (unique id = the bridge's ``node_id``). The token is checked against
``GET /v1/models``, which needs it whenever the bridge has one, so a wrong token is named as such
instead of surfacing later as failing switch commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import voluptuous as vol

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)

from .api import BridgeInfo, Hal0AuthError, Hal0Client, Hal0Error
from .const import DEFAULT_PORT, DOMAIN, LOGGER

TOKEN_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.PASSWORD))


def _connection_schema(defaults: Mapping[str, Any]) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=defaults.get(CONF_HOST, vol.UNDEFINED)): TextSelector(),
            vol.Required(CONF_PORT, default=defaults.get(CONF_PORT, DEFAULT_PORT)): vol.All(
                NumberSelector(NumberSelectorConfig(min=1, max=65535, mode=NumberSelectorMode.BOX)), vol.Coerce(int)
            ),
            vol.Optional(CONF_TOKEN, default=defaults.get(CONF_TOKEN, "")): TOKEN_SELECTOR,
        }
    )



def _entry_data(user_input: dict[str, Any]) -> dict[str, Any]:
    """The entry's data from a submitted connection form."""
    return {
        CONF_HOST: user_input[CONF_HOST].strip(),
        CONF_PORT: int(user_input[CONF_PORT]),
        CONF_TOKEN: user_input.get(CONF_TOKEN, ""),
    }

class Hal0ConfigFlow(ConfigFlow, domain=DOMAIN):
    """Handle the user, reauth and reconfigure steps."""

    VERSION = 1
    MINOR_VERSION = 1

    async def _validate(self, host: str, port: int, token: str) -> tuple[BridgeInfo | None, dict[str, str]]:
        """Reach the bridge, read who it is, check the token; errors keyed for the form."""
        client = Hal0Client(async_get_clientsession(self.hass), host, port, token)
        try:
            info = await client.info()
            await client.check_auth()
        except Hal0AuthError:
            return None, {"base": "invalid_auth"}
        except Hal0Error as err:
            LOGGER.debug("Cannot connect to hal0 bridge at %s:%s: %s", host, port, err)
            return None, {"base": "cannot_connect"}
        return info, {}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _entry_data(user_input)
            info, errors = await self._validate(data[CONF_HOST], data[CONF_PORT], data[CONF_TOKEN])
            if info is not None:
                await self.async_set_unique_id(info.node_id)
                self._abort_if_unique_id_configured(updates=data)
                return self.async_create_entry(title=f"hal0 {info.node_id}", data=data)
        return self.async_show_form(
            step_id="user", data_schema=_connection_schema(user_input or {}), errors=errors
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            token = user_input.get(CONF_TOKEN, "")
            info, errors = await self._validate(entry.data[CONF_HOST], entry.data[CONF_PORT], token)
            if info is not None:
                await self.async_set_unique_id(info.node_id)
                self._abort_if_unique_id_mismatch(reason="wrong_bridge")
                return self.async_update_reload_and_abort(entry, data_updates={CONF_TOKEN: token})
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=vol.Schema({vol.Optional(CONF_TOKEN, default=""): TOKEN_SELECTOR}),
            errors=errors,
            description_placeholders={"host": entry.data[CONF_HOST], "port": str(entry.data[CONF_PORT])},
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            data = _entry_data(user_input)
            info, errors = await self._validate(data[CONF_HOST], data[CONF_PORT], data[CONF_TOKEN])
            if info is not None:
                await self.async_set_unique_id(info.node_id)
                self._abort_if_unique_id_mismatch(reason="wrong_bridge")
                return self.async_update_reload_and_abort(entry, data_updates=data)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=_connection_schema(user_input or dict(entry.data)),
            errors=errors,
        )
