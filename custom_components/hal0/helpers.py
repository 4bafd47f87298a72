"""Turning client errors into Home Assistant errors, and reading a picture to edit, in one place.

Entity commands and actions are one line each because this decorator does the rest: a lost bridge
marks the coordinator unavailable, a rejected token starts reauth, and a bridge refusal becomes a
translated error that carries the bridge's own error code.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate

from homeassistant.components import camera, image, media_source
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .api import Hal0ApiError, Hal0AuthError, Hal0ConnectionError, Hal0Error
from .const import DOMAIN, MAX_IMAGE_BYTES
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


def read_file(path: Path) -> bytes:
    """A local picture's bytes (blocking: run it in the executor), bounded by ``MAX_IMAGE_BYTES``."""
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="image_too_large",
                translation_placeholders={"image": str(path), "max": str(MAX_IMAGE_BYTES)},
            )
        return path.read_bytes()
    except OSError as err:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="image_unreadable",
            translation_placeholders={"image": str(path), "error": err.strerror or str(err)},
        ) from err


async def async_read_image(hass: HomeAssistant, ref: str) -> bytes:
    """The picture ``ref`` names: a media source id (cameras and image entities by their snapshot, as
    ``ai_task`` resolves them; other sources must resolve to a local file) or a path Home Assistant is
    allowed to read (``allowlist_external_dirs``, the media folders)."""
    if ref.startswith("media-source://"):
        camera_prefix, image_prefix = "media-source://camera/", "media-source://image/"
        if ref.startswith(camera_prefix):
            return (await camera.async_get_image(hass, ref.removeprefix(camera_prefix))).content
        if ref.startswith(image_prefix):
            return (await image.async_get_image(hass, ref.removeprefix(image_prefix))).content
        try:
            media = await media_source.async_resolve_media(hass, ref, None)
        except HomeAssistantError as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="image_unreadable",
                translation_placeholders={"image": ref, "error": str(err)},
            ) from err
        if media.path is None:
            raise ServiceValidationError(
                translation_domain=DOMAIN, translation_key="image_not_local", translation_placeholders={"image": ref}
            )
        return await hass.async_add_executor_job(read_file, media.path)
    path = Path(ref)
    if not path.is_absolute() or not hass.config.is_allowed_path(str(path)):
        raise ServiceValidationError(
            translation_domain=DOMAIN, translation_key="image_not_allowed", translation_placeholders={"image": ref}
        )
    return await hass.async_add_executor_job(read_file, path)
