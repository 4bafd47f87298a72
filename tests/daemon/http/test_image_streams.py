"""``stream: true`` on both image routes, read as raw Server-Sent Events: event names and order, the
fields the openai client parses, errors before and after the stream starts, a client that leaves."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.pictures import decode, picture

GEN = "/v1/images/generations"
EDITS = "/v1/images/edits"


async def read_events(resp: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    """Every (event, data) of an SSE body, checking each data's type repeats its event name."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            assert name is not None
            data = json.loads(line.removeprefix("data: "))
            if name != "error":
                assert data["type"] == name
            events.append((name, data))
            name = None
    return events


@pytest.fixture(autouse=True)
def previews(standin: ComfyStandIn) -> None:
    standin.settings.preview_method = "latent2rgb"


async def test_generation_streams_partials_then_the_completed_image(api: TestClient) -> None:
    resp = await api.post(GEN, json={"prompt": "a fox", "model": "sd15", "size": "128x128", "stream": True,
                                     "partial_images": 2, "seed": 3})  # fmt: skip
    assert resp.status == 200 and resp.content_type == "text/event-stream"
    events = await read_events(resp)
    assert [name for name, _ in events] == [
        "image_generation.partial_image", "image_generation.partial_image", "image_generation.completed",
    ]  # fmt: skip
    partials = [data for _, data in events[:2]]
    assert [p["partial_image_index"] for p in partials] == [0, 1]
    assert all(p["output_format"] == "jpeg" and decode(base64.b64decode(p["b64_json"])).format == "JPEG" for p in partials)
    done = events[2][1]
    assert decode(base64.b64decode(done["b64_json"])).size == (128, 128)
    assert (done["size"], done["output_format"], done["_hal0"]["seed"], done["_hal0"]["index"]) == ("128x128", "png", 3, 0)
    assert done["usage"]["total_tokens"] == 0 and isinstance(done["created_at"], int)


async def test_partial_images_0_sends_only_the_completed_image(api: TestClient) -> None:
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "stream": True})
    assert [name for name, _ in await read_events(resp)] == ["image_generation.completed"]


async def test_without_previews_from_comfyui_only_the_completed_image_comes(
    api: TestClient, standin: ComfyStandIn
) -> None:
    standin.settings.preview_method = "none"
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "stream": True, "partial_images": 3})
    assert [name for name, _ in await read_events(resp)] == ["image_generation.completed"]


async def test_n_images_are_n_completed_events_in_the_output_format(api: TestClient) -> None:
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "stream": True, "n": 2, "output_format": "jpeg"})
    events = await read_events(resp)
    assert [name for name, _ in events] == ["image_generation.completed"] * 2
    assert [d["_hal0"]["index"] for _, d in events] == [0, 1]
    assert {decode(base64.b64decode(d["b64_json"])).format for _, d in events} == {"JPEG"}
    assert {d["output_format"] for _, d in events} == {"jpeg"}


async def test_an_edit_streams_image_edit_events(api: TestClient) -> None:
    data = aiohttp.FormData()
    for key, value in {"prompt": "x", "stream": "true", "partial_images": "1"}.items():
        data.add_field(key, value)
    data.add_field("image", picture(128, 128), filename="a.png")
    events = await read_events(await api.post(EDITS, data=data))
    assert [name for name, _ in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert events[1][1]["_hal0"]["edit"]["mode"] == "img2img"


async def test_bad_input_with_stream_is_a_plain_error(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(GEN, json={"prompt": "", "stream": True})
    assert resp.status == 422 and resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == "image.prompt_required"


async def test_a_failure_before_the_first_event_is_a_plain_502(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.preview_method = "none"
    standin.settings.fail_next_prompts = 1
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "stream": True, "partial_images": 2})
    assert resp.status == 502 and resp.content_type == "application/json"
    assert (await resp.json())["error"]["code"] == "image.upstream_failed"


async def test_a_failure_after_partials_is_an_error_event(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.fail_next_prompts = 1  # fails in VAEDecode, after the sampler's previews
    resp = await api.post(GEN, json={"prompt": "x", "model": "sd15", "size": "64x64", "stream": True,
                                     "partial_images": 2})  # fmt: skip
    assert resp.status == 200
    events = await read_events(resp)
    assert [name for name, _ in events] == ["image_generation.partial_image"] * 2 + ["error"]
    error = events[-1][1]["error"]
    assert error["code"] == "image.upstream_failed" and "channels" in error["message"]


async def test_a_client_that_leaves_mid_stream_takes_the_render_back(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.step_seconds = 0.05
    resp = await api.post(GEN, json={"prompt": "x", "model": "sd15", "size": "64x64", "steps": 60, "stream": True,
                                     "partial_images": 3})  # fmt: skip
    first = await resp.content.readline()
    assert first == b"event: image_generation.partial_image\n"
    resp.close()
    for _ in range(300):
        if standin.counters.prompts_interrupted:
            break
        await asyncio.sleep(0.01)
    assert standin.counters.prompts_interrupted == 1
    assert standin.counters.prompts_succeeded == 0
