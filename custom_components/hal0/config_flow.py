"""Config flow: add a bridge by host, port and token, tested before the entry exists -- or let it
be found: the bridge announces itself over mDNS (``_hal0-bridge._tcp.local.``) and, with MQTT on, in
its retained ``hal0/bridge/info``; both lead to one confirm step that asks only for the token.

One entry per bridge node (unique id = the bridge's ``node_id``). A discovery of a configured node
updates its host and port (the bridge moved) and reloads it. The token is checked against
``GET /v1/models``, which needs it whenever the bridge has one, so a wrong token is named as such
instead of surfacing later as failing switch commands. Options (the image defaults) in
:mod:`.options`.
"""

from __future__ import annotations

from collections.abc import Mapping
import json
from typing import Any

import voluptuous as vol
from yarl import URL

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult, OptionsFlowWithReload
from homeassistant.const import CONF_HOST, CONF_PORT, CONF_TOKEN
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.service_info.mqtt import MqttServiceInfo
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo
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
from .coordinator import Hal0ConfigEntry
from .options import clean_options, options_schema

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


def _address_from_api_url(api_url: object) -> tuple[str, int] | None:
    """Host and port of the ``api_url`` a bridge publishes, when it is a plain http URL."""
    if not isinstance(api_url, str):
        return None
    try:
        url = URL(api_url)
    except ValueError:
        return None
    if url.scheme != "http" or not url.host or url.port is None or url.host in ("0.0.0.0", "::"):
        return None
    return url.host, url.port


class Hal0ConfigFlow(ConfigFlow, domain=DOMAIN):
    """Handle the user, discovery (zeroconf, MQTT), reauth and reconfigure steps."""

    VERSION = 1
    MINOR_VERSION = 1

    _discovered_host: str
    _discovered_port: int
    _discovered_info: BridgeInfo

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: Hal0ConfigEntry) -> Hal0OptionsFlow:
        return Hal0OptionsFlow()

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
                return self.async_create_entry(title=f"hal0 {info.display_name}", data=data)
        return self.async_show_form(
            step_id="user", data_schema=_connection_schema(user_input or {}), errors=errors
        )

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """The bridge's mDNS announcement: ``node_id`` in TXT, the address in the record."""
        node_id = discovery_info.properties.get("node_id")
        if not isinstance(node_id, str) or not node_id:
            return self.async_abort(reason="not_hal0_bridge")
        if discovery_info.port is None:
            return self.async_abort(reason="no_address")
        return await self._async_discovered(node_id, discovery_info.host, discovery_info.port)

    async def async_step_mqtt(self, discovery_info: MqttServiceInfo) -> ConfigFlowResult:
        """The bridge's retained ``hal0/bridge/info``: ``node_id`` and ``api_url``."""
        try:
            payload = json.loads(discovery_info.payload) if discovery_info.payload else None
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("name") != "hal0-bridge" or not payload.get("node_id"):
            # an empty retained message clears the topic; anything else is not a bridge speaking
            return self.async_abort(reason="not_hal0_bridge")
        address = _address_from_api_url(payload.get("api_url"))
        if address is None:
            return self.async_abort(reason="no_address")
        return await self._async_discovered(str(payload["node_id"]), *address)

    async def _async_discovered(self, node_id: str, host: str, port: int) -> ConfigFlowResult:
        """Both discoveries end here: update a known node's address, else ask to confirm."""
        await self.async_set_unique_id(node_id)
        self._abort_if_unique_id_configured(updates={CONF_HOST: host, CONF_PORT: port})
        try:
            info = await Hal0Client(async_get_clientsession(self.hass), host, port).info()
        except Hal0Error as err:
            LOGGER.debug("Discovered hal0 bridge %s at %s:%s does not answer: %s", node_id, host, port, err)
            return self.async_abort(reason="cannot_connect")
        if info.node_id != node_id:
            return self.async_abort(reason="wrong_bridge")
        self._discovered_host, self._discovered_port, self._discovered_info = host, port, info
        self.context["title_placeholders"] = {"name": info.display_name}
        return await self.async_step_discovery_confirm()

    async def async_step_discovery_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Add the discovered bridge; the token is the one thing discovery cannot know."""
        info = self._discovered_info
        errors: dict[str, str] = {}
        if user_input is not None:
            token = user_input.get(CONF_TOKEN, "")
            checked, errors = await self._validate(self._discovered_host, self._discovered_port, token)
            if checked is not None:
                return self.async_create_entry(
                    title=f"hal0 {checked.display_name}",
                    data={CONF_HOST: self._discovered_host, CONF_PORT: self._discovered_port, CONF_TOKEN: token},
                )
        schema = vol.Schema({vol.Optional(CONF_TOKEN, default=""): TOKEN_SELECTOR} if info.auth_required else {})
        return self.async_show_form(
            step_id="discovery_confirm",
            data_schema=schema,
            errors=errors,
            description_placeholders={
                "name": info.display_name,
                "host": self._discovered_host,
                "port": str(self._discovered_port),
            },
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


class Hal0OptionsFlow(OptionsFlowWithReload):
    """Image defaults for ``ai_task`` and ``hal0.generate_image``; the entry reloads on save."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        entry: Hal0ConfigEntry = self.config_entry
        coordinator = getattr(entry, "runtime_data", None)
        if coordinator is None:
            return self.async_abort(reason="not_loaded")
        models = coordinator.info.models
        errors: dict[str, str] = {}
        if user_input is not None:
            options, errors = clean_options(user_input)
            if not errors:
                return self.async_create_entry(data=options)
        return self.async_show_form(
            step_id="init", data_schema=options_schema(models, user_input or entry.options), errors=errors
        )
