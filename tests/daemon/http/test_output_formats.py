"""``output_format`` / ``output_compression`` on generations: png untouched, jpeg and webp encoded by the
bridge; the cache URL's extension and content type follow the format."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.pictures import decode

GEN = "/v1/images/generations"


async def comfyuis_own_png(standin: ComfyStandIn) -> bytes:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{standin.url}/history") as resp:
            entry = list((await resp.json()).values())[-1]
        ref = next(iter(entry["outputs"].values()))["images"][0]
        async with session.get(f"{standin.url}/view", params=ref) as resp:
            return await resp.read()


async def test_png_is_comfyuis_file_byte_for_byte(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "response_format": "b64_json"})
    body = await resp.json()
    assert body["output_format"] == "png" and body["_hal0"]["output_format"] == "png"
    assert base64.b64decode(body["data"][0]["b64_json"]) == await comfyuis_own_png(standin)


@pytest.mark.parametrize(("fmt", "ext", "mime", "pillow"), [("jpeg", ".jpg", "image/jpeg", "JPEG"),
                                                           ("webp", ".webp", "image/webp", "WEBP")])  # fmt: skip
async def test_jpeg_and_webp_urls_keep_extension_and_content_type(
    api: TestClient, fmt: str, ext: str, mime: str, pillow: str
) -> None:
    resp = await api.post(GEN, json={"prompt": "x", "size": "96x64", "output_format": fmt, "output_compression": 70})
    body = await resp.json()
    assert resp.status == 200, body
    url = body["data"][0]["url"]
    assert url.endswith(ext)
    image = await api.get(url)
    assert image.content_type == mime and "immutable" in image.headers["Cache-Control"]
    decoded = decode(await image.read())
    assert (decoded.format, decoded.size) == (pillow, (96, 64))


async def test_compression_changes_the_bytes(api: TestClient) -> None:
    sizes = []
    for quality in (5, 95):
        resp = await api.post(GEN, json={"prompt": "x", "size": "256x256", "seed": 1, "output_format": "jpeg",
                                         "output_compression": quality, "response_format": "b64_json"})  # fmt: skip
        sizes.append(len(base64.b64decode((await resp.json())["data"][0]["b64_json"])))
    assert sizes[0] < sizes[1]


@pytest.mark.parametrize("body", [{"output_format": "gif"}, {"output_format": {}}, {"output_format": ["png"]},
                                  {"output_compression": 101}, {"output_compression": "9"},
                                  {"output_compression": 2.5}, {"stream": "yes"}, {"partial_images": -1},
                                  {"partial_images": True}])  # fmt: skip
async def test_bad_output_fields_are_422(api: TestClient, standin: ComfyStandIn, body: dict[str, object]) -> None:
    resp = await api.post(GEN, json={"prompt": "x", **body})
    answer = await resp.json()
    assert resp.status == 422 and answer["error"]["param"] == next(iter(body))
    assert standin.counters.prompts_submitted == 0
