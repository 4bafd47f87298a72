"""The official ``openai`` Python package against our route: what OpenAI users will really run."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openai
import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from openai import AsyncOpenAI
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.pictures import decode, mask, picture
from tests.support.png import png_size

TOKEN = "test-token-0123456789"


@pytest.fixture
async def client(aiohttp_client: Any, bridge_config: Any) -> AsyncIterator[AsyncOpenAI]:
    api: TestClient = await aiohttp_client(create_app(bridge_config(server={"token": TOKEN})))
    async with AsyncOpenAI(base_url=str(api.make_url("/v1")), api_key=TOKEN, max_retries=0) as oai:
        yield oai


async def test_generate_url(client: AsyncOpenAI) -> None:
    result = await client.images.generate(model="sdxl-turbo", prompt="a lighthouse", size="256x256")
    assert len(result.data) == 1
    url = urlsplit(result.data[0].url or "")
    assert url.path.endswith(".png")
    assert set(parse_qs(url.query)) == {"exp", "sig"}  # a token is set: the URL opens without it


async def test_generate_b64_json_n_2(client: AsyncOpenAI) -> None:
    result = await client.images.generate(
        model="sdxl-turbo", prompt="two cats", size="256x256", n=2, response_format="b64_json"
    )
    assert [png_size(base64.b64decode(d.b64_json)) for d in result.data] == [(256, 256), (256, 256)]


async def test_extra_body_seed_and_steps_are_honoured(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    raw = await client.images.with_raw_response.generate(
        model="sd-1.5-pruned-emaonly", prompt="a fox", size="256x256", extra_body={"seed": 99, "steps": 5}
    )
    hal0 = raw.http_response.json()["_hal0"]
    assert (hal0["seed"], hal0["steps"], hal0["model"]) == (99, 5, "sd-1.5-pruned-emaonly")
    assert standin.counters.prompts_accepted == 1


async def test_our_error_code_and_message_reach_the_client(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        await client.images.generate(model="sdxl-turbo", prompt="x", size="axb")  # type: ignore[arg-type]
    assert info.value.code == "image.invalid_size"
    assert "axb" in info.value.message
    assert info.value.param == "size"
    assert standin.counters.prompts_submitted == 0


async def test_unknown_model_is_not_found(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.images.generate(model="dall-e-3", prompt="x")
    assert info.value.code == "image.model_not_curated"


async def test_upstream_failure_is_a_502_with_comfyuis_text(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    standin.settings.fail_next_prompts = 1
    with pytest.raises(openai.InternalServerError) as info:
        await client.images.generate(model="sdxl-turbo", prompt="x", size="64x64")
    assert info.value.status_code == 502
    assert info.value.code == "image.upstream_failed"


async def test_wrong_key_is_an_authentication_error(aiohttp_client: Any, bridge_config: Any) -> None:
    api: TestClient = await aiohttp_client(create_app(bridge_config(server={"token": TOKEN})))
    async with AsyncOpenAI(base_url=str(api.make_url("/v1")), api_key="wrong", max_retries=0) as oai:
        with pytest.raises(openai.AuthenticationError) as info:
            await oai.images.generate(model="sdxl-turbo", prompt="x")
    assert info.value.code == "auth.unauthorized"


async def test_models_list(client: AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert sorted(models) == ["sd-1.5-pruned-emaonly", "sdxl-turbo"]


# --- edits and streams, as the openai client does them ------------------------------------------


async def test_edit_with_image_and_mask(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    result = await client.images.edit(
        image=("photo.png", picture(256, 256), "image/png"),
        mask=("mask.png", mask(256, 256), "image/png"),
        prompt="a red door",
        model="sdxl-turbo",
        response_format="b64_json",
        extra_body={"strength": 0.6, "seed": 11},
    )
    assert decode(base64.b64decode(result.data[0].b64_json or "")).size == (256, 256)
    hal0 = (result.model_extra or {})["_hal0"]
    assert (hal0["edit"]["mode"], hal0["edit"]["strength"], hal0["seed"]) == ("inpaint", 0.6, 11)
    assert standin.counters.uploads == 2


async def test_edit_of_a_jpeg_file_object_returns_a_url(client: AsyncOpenAI, tmp_path: Any) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(picture(192, 128, fmt="JPEG"))
    with path.open("rb") as fh:
        result = await client.images.edit(image=fh, prompt="autumn", size="128x128", output_format="webp")
    assert result.data[0].url and urlsplit(result.data[0].url).path.endswith(".webp")


async def test_a_bad_mask_reaches_the_client_as_its_error(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as info:
        await client.images.edit(image=picture(256, 256), mask=mask(128, 128), prompt="x")
    assert info.value.code == "image.invalid_mask" and info.value.param == "mask"
    assert standin.counters.uploads == 0


async def test_streamed_generation_with_two_partial_images(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    standin.settings.preview_method = "latent2rgb"
    stream = await client.images.generate(
        model="sd-1.5-pruned-emaonly", prompt="a lighthouse", size="128x128", stream=True, partial_images=2
    )
    events = [event async for event in stream]
    assert [type(e) for e in events] == [ImageGenPartialImageEvent, ImageGenPartialImageEvent, ImageGenCompletedEvent]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]  # type: ignore[union-attr]
    final = events[-1]
    assert isinstance(final, ImageGenCompletedEvent) and final.output_format == "png" and final.size == "128x128"
    assert decode(base64.b64decode(final.b64_json)).size == (128, 128)
    assert (final.model_extra or {})["_hal0"]["model"] == "sd-1.5-pruned-emaonly"


async def test_streamed_edit(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    standin.settings.preview_method = "latent2rgb"
    stream = await client.images.edit(image=picture(128, 128), prompt="x", stream=True, partial_images=1)
    events = [event async for event in stream]
    assert [type(e) for e in events] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]


async def test_a_stream_failing_midway_raises_in_the_client(client: AsyncOpenAI, standin: ComfyStandIn) -> None:
    standin.settings.preview_method = "latent2rgb"
    standin.settings.fail_next_prompts = 1
    stream = await client.images.generate(model="sd15", prompt="x", size="64x64", stream=True, partial_images=1)
    seen = []
    with pytest.raises(openai.APIError) as info:
        async for event in stream:
            seen.append(event.type)
    assert seen == ["image_generation.partial_image"]
    assert info.value.body["code"] == "image.upstream_failed"  # type: ignore[index]
