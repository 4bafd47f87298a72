"""Turning client errors into Home Assistant errors, in one place.

Entity commands and actions are one line each because this decorator does the rest: a lost bridge
marks the coordinator unavailable, a rejected token starts reauth, and a bridge refusal becomes a
translated error that carries the bridge's own error code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Concatenate

from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .api import Hal0ApiError, Hal0AuthError, Hal0ConnectionError, Hal0Error
from .const import DOMAIN
from .coordinator import Hal0Coordinator
from .entity import Hal0Entity


def translate_error(err: Hal0Error, coordinator: Hal0Coordinator) -> HomeAssistantError:
    """The HomeAssistantError to raise for a client error (side effects: availability, reauth)."""
    if isinstance(err, Hal0AuthError):
        coordinator.config_entry.async_start_reauth(coordinator.hass)
        return HomeAssistantError(translation_domain=DOMAIN, translation_key="invalid_auth")
    if isinstance(err, Hal0ApiError):
        # A 4xx that names a request field is the caller's input, not a bridge failure.
        cls = ServiceValidationError if err.status in (404, 422) else HomeAssistantError
        return cls(
            translation_domain=DOMAIN,
            translation_key="api_error",
            translation_placeholders={"code": err.code, "message": err.message},
        )
    if isinstance(err, Hal0ConnectionError) and not coordinator.streaming and coordinator.last_update_success:
        # Polling: this is news, show it now. Streaming: the stream is the judge of reachability
        # (marking stale here would stick, as nothing polls while the stream is up).
        coordinator.async_set_update_error(err)
    return HomeAssistantError(
        translation_domain=DOMAIN, translation_key="cannot_connect", translation_placeholders={"error": str(err)}
    )


def hal0_exception_handler[_EntityT: Hal0Entity, **_P](
    func: Callable[Concatenate[_EntityT, _P], Coroutine[Any, Any, Any]],
) -> Callable[Concatenate[_EntityT, _P], Coroutine[Any, Any, None]]:
    """Decorate entity commands: client errors become translated HomeAssistantErrors."""

    async def handler(self: _EntityT, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            await func(self, *args, **kwargs)
        except Hal0Error as err:
            raise translate_error(err, self.coordinator) from err

    return handler
