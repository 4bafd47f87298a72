"""Edits from Home Assistant: hal0.generate_image with ``image``/``strength``, ai_task with an attachment."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from homeassistant.components import ai_task
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import entity_registry as er
from PIL import Image

from custom_components.hal0.const import DOMAIN

from .conftest import RunningBridge, setup_entry


def picture(width: int = 192, height: int = 128) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


async def standin_counters(running: RunningBridge) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{running.raw_config['comfyui']['url']}/_standin/state") as resp:
            return (await resp.json())["counters"]


@pytest.fixture
def media(hass: HomeAssistant, tmp_path: Path) -> Path:
    """The local media folder (ai_task_ready's), readable by Home Assistant, with a picture in it."""
    folder = tmp_path / "media"
    folder.mkdir(exist_ok=True)
    hass.config.allowlist_external_dirs = {str(folder)}
    (folder / "porch.png").write_bytes(picture())
    (folder / "notes.txt").write_text("not a picture")
    return folder


async def _generate(hass: HomeAssistant, **data: object) -> dict:
    return await hass.services.async_call(
        DOMAIN, "generate_image", {"prompt": "the porch in snow", **data}, blocking=True, return_response=True
    )


async def test_generate_image_with_a_local_path_edits_it(
    hass: HomeAssistant, full_bridge: RunningBridge, media: Path
) -> None:
    await setup_entry(hass, full_bridge)

    answer = await _generate(hass, image=str(media / "porch.png"), strength=0.5, seed=4)

    assert answer["size"] == "192x128"  # the source's size, not the model's 1024x1024
    assert answer["edit"]["mode"] == "img2img" and answer["edit"]["strength"] == 0.5
    assert answer["seed"] == 4 and answer["urls"]
    assert (await standin_counters(full_bridge))["uploads"] == 1


async def test_generate_image_with_a_media_source_id(hass: HomeAssistant, full_bridge: RunningBridge, media: Path) -> None:
    await setup_entry(hass, full_bridge)

    answer = await _generate(hass, image="media-source://media_source/local/porch.png")

    assert answer["edit"]["source_size"] == "192x128"


async def test_a_path_home_assistant_may_not_read_is_refused_before_the_bridge(
    hass: HomeAssistant, full_bridge: RunningBridge, media: Path, tmp_path: Path
) -> None:
    await setup_entry(hass, full_bridge)
    outside = tmp_path / "secret.png"
    outside.write_bytes(picture())

    with pytest.raises(ServiceValidationError) as err:
        await _generate(hass, image=str(outside))
    assert err.value.translation_key == "image_not_allowed"
    with pytest.raises(ServiceValidationError) as err:
        await _generate(hass, image=str(media / "missing.png"))
    assert err.value.translation_key == "image_unreadable"
    assert full_bridge.bridge.hub.status.mode == "inference"  # nothing reached the GPU


async def test_strength_without_an_image_is_refused(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    with pytest.raises(ServiceValidationError) as err:
        await _generate(hass, strength=0.4)
    assert err.value.translation_key == "strength_needs_image"


async def test_the_bridge_refusing_the_picture_is_a_translated_error(
    hass: HomeAssistant, full_bridge: RunningBridge, media: Path
) -> None:
    await setup_entry(hass, full_bridge)
    with pytest.raises(ServiceValidationError) as err:
        await _generate(hass, image=str(media / "notes.txt"))
    assert err.value.translation_placeholders["code"] == "image.invalid_image"


def ai_task_entity(hass: HomeAssistant) -> str:
    entity_id = er.async_get(hass).async_get_entity_id("ai_task", DOMAIN, "testnode_ai_task")
    assert entity_id is not None
    return entity_id


async def test_ai_task_supports_attachments_and_an_image_makes_it_an_edit(
    hass: HomeAssistant, full_bridge: RunningBridge, media: Path
) -> None:
    await setup_entry(hass, full_bridge)
    entity_id = ai_task_entity(hass)
    state = hass.states.get(entity_id)
    assert state.attributes["supported_features"] & ai_task.AITaskEntityFeature.SUPPORT_ATTACHMENTS

    result = await ai_task.async_generate_image(
        hass, task_name="porch", entity_id=entity_id, instructions="the porch at night",
        attachments=[{"media_content_id": "media-source://media_source/local/porch.png", "media_content_type": "image/png"}],
    )  # fmt: skip

    assert (result["width"], result["height"]) == (192, 128)
    assert (await standin_counters(full_bridge))["uploads"] == 1


async def test_ai_task_with_a_non_image_attachment_is_refused(
    hass: HomeAssistant, full_bridge: RunningBridge, media: Path
) -> None:
    await setup_entry(hass, full_bridge)
    with pytest.raises(HomeAssistantError) as err:
        await ai_task.async_generate_image(
            hass, task_name="t", entity_id=ai_task_entity(hass), instructions="x",
            attachments=[{"media_content_id": "media-source://media_source/local/notes.txt", "media_content_type": "text/plain"}],
        )  # fmt: skip
    assert err.value.translation_key == "attachment_not_image"


async def test_the_last_image_entity_can_be_edited_by_its_media_source_id(
    hass: HomeAssistant, full_bridge: RunningBridge
) -> None:
    await setup_entry(hass, full_bridge)
    first = await _generate(hass, size="128x96")
    image_id = er.async_get(hass).async_get_entity_id("image", DOMAIN, "testnode_last_image")

    answer = await _generate(hass, image=f"media-source://image/{image_id}")

    assert answer["edit"]["source_size"] == first["size"] == "128x96"


async def test_an_unknown_media_source_and_a_huge_file_are_refused(
    hass: HomeAssistant, full_bridge: RunningBridge, media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await setup_entry(hass, full_bridge)
    with pytest.raises(ServiceValidationError) as err:
        await _generate(hass, image="media-source://media_source/local/nope.png")
    assert err.value.translation_key == "image_unreadable"
    monkeypatch.setattr("custom_components.hal0.helpers.MAX_IMAGE_BYTES", 100)
    with pytest.raises(ServiceValidationError) as err:
        await _generate(hass, image=str(media / "porch.png"))
    assert err.value.translation_key == "image_too_large"
