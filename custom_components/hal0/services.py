"""Actions ``hal0.switchover`` and ``hal0.generate_image``, registered once in ``async_setup``."""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv

from .api import Hal0Error
from .const import (
    ATTR_CFG,
    ATTR_CONFIG_ENTRY_ID,
    ATTR_FORCE,
    ATTR_IMAGE,
    ATTR_MODE,
    ATTR_MODEL,
    ATTR_N,
    ATTR_NEGATIVE_PROMPT,
    ATTR_PIN,
    ATTR_PROMPT,
    ATTR_SEED,
    ATTR_SIZE,
    ATTR_STEPS,
    ATTR_STRENGTH,
    DOMAIN,
    MODES,
    SERVICE_GENERATE_IMAGE,
    SERVICE_SWITCHOVER,
)
from .coordinator import Hal0ConfigEntry
from .helpers import async_read_image, translate_error
from .options import generation_defaults, valid_size

SWITCHOVER_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required(ATTR_MODE): vol.In(MODES),
        vol.Optional(ATTR_FORCE, default=False): cv.boolean,
        vol.Optional(ATTR_PIN): cv.boolean,
    }
)

GENERATE_IMAGE_SCHEMA = vol.Schema(
    {
        vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string,
        vol.Required(ATTR_PROMPT): vol.All(cv.string, vol.Length(min=1)),
        vol.Optional(ATTR_MODEL): cv.string,
        vol.Optional(ATTR_SIZE): valid_size,
        vol.Optional(ATTR_N): vol.All(vol.Coerce(int), vol.Range(min=1, max=64)),
        vol.Optional(ATTR_SEED): vol.All(vol.Coerce(int), vol.Range(min=0)),
        vol.Optional(ATTR_STEPS): vol.All(vol.Coerce(int), vol.Range(min=1, max=200)),
        vol.Optional(ATTR_CFG): vol.All(vol.Coerce(float), vol.Range(min=0, max=100)),
        vol.Optional(ATTR_NEGATIVE_PROMPT): cv.string,
        # an edit: the picture (a media source id or a local path HA may read) and how much to repaint
        vol.Optional(ATTR_IMAGE): vol.All(cv.string, vol.Length(min=1)),
        vol.Optional(ATTR_STRENGTH): vol.All(vol.Coerce(float), vol.Range(min=0, max=1, min_included=False)),
    }
)


def _entry(hass: HomeAssistant, call: ServiceCall) -> Hal0ConfigEntry:
    """The loaded bridge the call targets; the only one when the call names none."""
    if entry_id := call.data.get(ATTR_CONFIG_ENTRY_ID):
        entry = hass.config_entries.async_get_entry(entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="entry_not_found", translation_placeholders={"entry_id": entry_id}
            )
        if entry.state is not ConfigEntryState.LOADED:
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="entry_not_loaded", translation_placeholders={"title": entry.title}
            )
        return entry
    loaded = hass.config_entries.async_loaded_entries(DOMAIN)
    if len(loaded) != 1:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="entry_required")
    return loaded[0]


async def _switchover(call: ServiceCall) -> ServiceResponse:
    coordinator = _entry(call.hass, call).runtime_data
    try:
        answer = await coordinator.client.switchover(
            call.data[ATTR_MODE], force=call.data[ATTR_FORCE], pin=call.data.get(ATTR_PIN)
        )
    except Hal0Error as err:
        raise translate_error(err, coordinator) from err
    return {"status": answer.get("status"), "mode": answer.get("mode")}


async def _generate_image(call: ServiceCall) -> ServiceResponse:
    """A generation, or with ``image`` an edit of that picture (``strength``: how much is repainted)."""
    coordinator = _entry(call.hass, call).runtime_data
    ref = call.data.get(ATTR_IMAGE)
    if ref is None and ATTR_STRENGTH in call.data:
        raise ServiceValidationError(translation_domain=DOMAIN, translation_key="strength_needs_image")
    # what the call names wins; the entry's options fill in the rest (then the bridge's defaults)
    extras: dict[str, Any] = generation_defaults(coordinator.config_entry.options, call.data.get(ATTR_MODEL))
    if ref is not None:
        extras.pop(ATTR_SIZE, None)  # an edit keeps its picture's own size unless the call names one
    extras.update(
        (k, call.data[k])
        for k in (ATTR_MODEL, ATTR_SIZE, ATTR_N, ATTR_SEED, ATTR_STEPS, ATTR_CFG, ATTR_NEGATIVE_PROMPT)
        if k in call.data
    )
    source = await async_read_image(call.hass, ref) if ref is not None else None
    try:
        if source is None:
            result = await coordinator.client.generate_image(call.data[ATTR_PROMPT], **extras)
        else:
            result = await coordinator.client.edit_image(
                call.data[ATTR_PROMPT], source, strength=call.data.get(ATTR_STRENGTH), **extras
            )
    except Hal0Error as err:
        raise translate_error(err, coordinator) from err
    if result.urls:
        coordinator.record_image(result.urls[-1], model=result.model, seed=result.seed, prompt_id=result.prompt_id)
    return {
        "urls": list(result.urls),
        "model": result.model,
        "seed": result.seed,
        "steps": result.steps,
        "cfg": result.cfg,
        "size": result.size,
        "prompt_id": result.prompt_id,
        "timings": result.timings,
        "created": result.created,
        "edit": result.edit,
    }


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    hass.services.async_register(
        DOMAIN, SERVICE_SWITCHOVER, _switchover, schema=SWITCHOVER_SCHEMA, supports_response=SupportsResponse.OPTIONAL
    )
    hass.services.async_register(
        DOMAIN,
        SERVICE_GENERATE_IMAGE,
        _generate_image,
        schema=GENERATE_IMAGE_SCHEMA,
        supports_response=SupportsResponse.OPTIONAL,
    )
