"""Image generation end to end: hal0.generate_image, the last-image entity, and ai_task."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from homeassistant.components import ai_task
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from custom_components.hal0.const import DOMAIN

from .conftest import TOKEN, RunningBridge, setup_entry, wait_until

PNG = b"\x89PNG\r\n\x1a\n"


def eid(hass: HomeAssistant, platform: str, key: str) -> str:
    entity_id = er.async_get(hass).async_get_entity_id(platform, DOMAIN, f"testnode_{key}")
    assert entity_id is not None
    return entity_id


async def _generate(hass: HomeAssistant, **data: object) -> dict:
    return await hass.services.async_call(
        DOMAIN, "generate_image", {"prompt": "a lighthouse", "size": "64x64", **data}, blocking=True,
        return_response=True,
    )  # fmt: skip


async def test_generate_image_returns_absolute_urls_and_what_was_used(
    hass: HomeAssistant, full_bridge: RunningBridge
) -> None:
    await setup_entry(hass, full_bridge)

    answer = await _generate(hass, seed=42, steps=3, cfg=1.5, model="sdxl")

    assert len(answer["urls"]) == 1
    assert answer["urls"][0].startswith(f"{full_bridge.url}/api/images/cache/")
    assert (answer["model"], answer["seed"], answer["steps"], answer["cfg"], answer["size"]) == (
        "sdxl-turbo", 42, 3, 1.5, "64x64"
    )
    assert answer["prompt_id"]
    assert "render_s" in answer["timings"]


async def test_generate_image_switches_the_gpu_to_generation(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    assert full_bridge.bridge.hub.status.mode == "inference"

    await _generate(hass)

    assert full_bridge.bridge.hub.status.mode == "generation"


async def test_generate_image_batch_returns_every_url(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)

    answer = await _generate(hass, n=2, negative_prompt="fog")

    assert len(set(answer["urls"])) == 2


async def test_last_image_entity_shows_the_generated_image(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, full_bridge: RunningBridge
) -> None:
    await setup_entry(hass, full_bridge)
    image_id = eid(hass, "image", "last_image")
    assert hass.states.get(image_id).state == "unknown"

    answer = await _generate(hass)

    image_state = hass.states.get(image_id)
    assert image_state.attributes["url"] == answer["urls"][0]
    assert image_state.attributes["prompt_id"] == answer["prompt_id"]
    client = await hass_client()
    resp = await client.get(f"/api/image_proxy/{image_id}")
    assert resp.status == 200
    assert resp.content_type == "image/png"
    assert (await resp.read()).startswith(PNG)


async def test_last_image_follows_images_made_by_other_clients(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    entry = await setup_entry(hass, full_bridge)
    await wait_until(lambda: entry.runtime_data.streaming, "stream up")
    image_id = eid(hass, "image", "last_image")

    async with aiohttp.ClientSession() as session:  # an OpenAI-style client, not Home Assistant
        async with session.post(
            f"{full_bridge.url}/v1/images/generations",
            json={"prompt": "from elsewhere", "size": "64x64"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as resp:
            body = await resp.json()

    url = f"{full_bridge.url}{body['data'][0]['url']}"
    await wait_until(lambda: hass.states.get(image_id).attributes.get("url") == url, "image entity updated")
    assert hass.states.get(image_id).state != "unknown"


async def test_last_image_is_none_when_the_cache_lost_it(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, full_bridge: RunningBridge
) -> None:
    await setup_entry(hass, full_bridge)
    image_id = eid(hass, "image", "last_image")
    answer = await _generate(hass)
    name = urlsplit(answer["urls"][0]).path.rsplit("/", 1)[1]  # the URL is signed: ?exp=...&sig=...
    cache_dir = Path(full_bridge.bridge.config.image.cache_dir)
    for path in cache_dir.rglob(name):
        path.unlink()

    client = await hass_client()
    resp = await client.get(f"/api/image_proxy/{image_id}")

    assert resp.status == 500  # HA's image view: the entity had no bytes to give


async def test_ai_task_generates_an_image_into_the_media_library(
    hass: HomeAssistant, full_bridge: RunningBridge, tmp_path: Path
) -> None:
    await setup_entry(hass, full_bridge)
    entity_id = eid(hass, "ai_task", "ai_task")

    result = await ai_task.async_generate_image(
        hass, task_name="doorbell", entity_id=entity_id, instructions="a visitor at the door"
    )

    assert result["mime_type"] == "image/png"
    assert result["model"] == "sdxl-turbo"
    assert (result["width"], result["height"]) == (1024, 1024)
    assert result["media_source_id"].startswith("media-source://ai_task/image/")
    stored = list((tmp_path / "media" / "ai_task" / "image").iterdir())
    assert len(stored) == 1
    assert stored[0].read_bytes().startswith(PNG)


async def test_ai_task_failure_is_a_translated_error(hass: HomeAssistant, full_bridge: RunningBridge) -> None:
    await setup_entry(hass, full_bridge)
    entity_id = eid(hass, "ai_task", "ai_task")
    await _generate(hass)  # ComfyUI is up now
    url = full_bridge.raw_config["comfyui"]["url"]
    async with aiohttp.ClientSession() as session:
        await session.post(f"{url}/_standin/config", json={"fail_next_prompts": 1})

    with pytest.raises(HomeAssistantError) as err:
        await ai_task.async_generate_image(hass, task_name="t", entity_id=entity_id, instructions="x")

    assert err.value.translation_placeholders["code"] == "image.upstream_failed"


async def test_last_image_opens_with_the_token_when_its_signature_is_gone(
    hass: HomeAssistant, hass_client: ClientSessionGenerator, full_bridge: RunningBridge
) -> None:
    """A signed URL expires (server.signed_url_ttl) while the entity may still show that image:
    the integration sends its bearer token with every image fetch, so the image stays visible."""
    entry = await setup_entry(hass, full_bridge)
    answer = await _generate(hass)
    signed = urlsplit(answer["urls"][0])
    assert "sig=" in signed.query  # the bridge has a token: its image URLs are signed
    unsigned = signed._replace(query="").geturl()
    async with aiohttp.ClientSession() as session, session.get(unsigned) as resp:
        assert resp.status == 401  # without the signature, the bytes need the token
    entry.runtime_data.record_image(unsigned)
    await hass.async_block_till_done()

    client = await hass_client()
    resp = await client.get(f"/api/image_proxy/{eid(hass, 'image', 'last_image')}")

    assert resp.status == 200
    assert (await resp.read()).startswith(PNG)
