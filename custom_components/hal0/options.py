"""The entry's options: what ``ai_task`` and ``hal0.generate_image`` send when the caller does not say.

Model, size, steps and negative prompt. An option left empty is not sent, so the bridge's own default
(``image.default_model``, the model's steps and size) applies -- the behaviour before options existed.
"""

from __future__ import annotations

from collections.abc import Mapping
import re
from typing import Any

import voluptuous as vol

from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
    TextSelectorConfig,
)

from .const import CONF_MODEL, CONF_NEGATIVE_PROMPT, CONF_SIZE, CONF_STEPS

SIZE_RE = re.compile(r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$")
MAX_STEPS = 200


def valid_size(value: object) -> str:
    """``WIDTHxHEIGHT`` or ``auto``, as the bridge accepts it."""
    if not isinstance(value, str) or not SIZE_RE.match(value):
        raise vol.Invalid("expected WIDTHxHEIGHT (e.g. 1024x1024) or auto")
    return value


def options_schema(models: tuple[str, ...], current: Mapping[str, Any]) -> vol.Schema:
    """The options form; ``models`` are the bridge's curated models (``/api/info``)."""

    def default(key: str) -> Any:
        return {"suggested_value": current[key]} if current.get(key) not in (None, "") else {}

    return vol.Schema(
        {
            vol.Optional(CONF_MODEL, description=default(CONF_MODEL)): SelectSelector(
                SelectSelectorConfig(options=list(models), mode=SelectSelectorMode.DROPDOWN, custom_value=False)
            ),
            vol.Optional(CONF_SIZE, description=default(CONF_SIZE)): TextSelector(),
            vol.Optional(CONF_STEPS, description=default(CONF_STEPS)): NumberSelector(
                NumberSelectorConfig(min=1, max=MAX_STEPS, step=1, mode=NumberSelectorMode.BOX)
            ),
            vol.Optional(CONF_NEGATIVE_PROMPT, description=default(CONF_NEGATIVE_PROMPT)): TextSelector(
                TextSelectorConfig(multiline=True)
            ),
        }
    )


def clean_options(user_input: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The options to store (empty fields dropped) and the form errors, keyed by field."""
    options: dict[str, Any] = {}
    errors: dict[str, str] = {}
    model = str(user_input.get(CONF_MODEL) or "").strip()
    if model:  # the selector only offers the bridge's models
        options[CONF_MODEL] = model
    size = str(user_input.get(CONF_SIZE) or "").strip()
    if size:
        try:
            options[CONF_SIZE] = valid_size(size)
        except vol.Invalid:
            errors[CONF_SIZE] = "invalid_size"
    if user_input.get(CONF_STEPS) not in (None, ""):
        options[CONF_STEPS] = int(user_input[CONF_STEPS])
    negative = str(user_input.get(CONF_NEGATIVE_PROMPT) or "").strip()
    if negative:
        options[CONF_NEGATIVE_PROMPT] = negative
    return options, errors


def generation_defaults(options: Mapping[str, Any], model: str | None = None) -> dict[str, Any]:
    """The request fields the options set, for ``Hal0Client.generate_image``.

    Size and steps belong to the options' model: a request for another ``model`` keeps only the
    negative prompt, so it gets that model's own size and steps from the bridge.
    """
    chosen = {k: options[k] for k in (CONF_MODEL, CONF_SIZE, CONF_STEPS, CONF_NEGATIVE_PROMPT) if options.get(k)}
    if model is not None and model != chosen.get(CONF_MODEL):
        return {k: v for k, v in chosen.items() if k == CONF_NEGATIVE_PROMPT} | {CONF_MODEL: model}
    return chosen
