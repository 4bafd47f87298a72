"""``POST /v1/images/edits`` end to end against the ComfyUI stand-in: multipart in, img2img and inpaint
graphs out, validation before the GPU, uploads into ComfyUI's temp folder under bounded names."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from PIL import Image

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.pictures import decode, mask, noisy, picture

EDITS = "/v1/images/edits"
RED = (220, 20, 20)


def form(image: bytes | None = None, mask_data: bytes | None = None, **fields: Any) -> aiohttp.FormData:
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in fields.items():
        data.add_field(name, str(value).lower() if isinstance(value, bool) else str(value))
    if image is not None:
        data.add_field("image", image, filename="source.png", content_type="image/png")
    if mask_data is not None:
        data.add_field("mask", mask_data, filename="mask.png", content_type="image/png")
    return data


def solid(width: int, height: int, colour: tuple[int, int, int] = RED) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return out.getvalue()


async def last_graph(standin: ComfyStandIn) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{standin.url}/history") as resp:
        history = await resp.json()
    return list(history.values())[-1]["prompt"][2]


def classes(graph: dict[str, Any]) -> set[str]:
    return {n["class_type"] for n in graph.values()}


def node(graph: dict[str, Any], class_type: str) -> dict[str, Any]:
    return next(n["inputs"] for n in graph.values() if n["class_type"] == class_type)


def staged_files(standin: ComfyStandIn) -> list[str]:
    return sorted(p.name for p in (standin.temp_dir / "hal0").glob("*")) if (standin.temp_dir / "hal0").exists() else []


async def edit(api: TestClient, data: aiohttp.FormData) -> tuple[int, dict[str, Any]]:
    resp = await api.post(EDITS, data=data)
    return resp.status, await resp.json()


async def test_an_opaque_image_is_img2img_at_its_own_size(api: TestClient, standin: ComfyStandIn) -> None:
    status, body = await edit(api, form(picture(320, 200), prompt="a watercolour"))
    assert status == 200, body
    used = body["_hal0"]
    assert used["template"] == "sdxl-turbo-img2img"
    assert used["edit"] == {"mode": "img2img", "strength": 0.75, "mask": "none", "source_size": "320x200",
                            "source_format": "png"}  # fmt: skip
    assert used["size"] == body["size"] == "320x200"
    graph = await last_graph(standin)
    assert {"LoadImage", "VAEEncode", "RepeatLatentBatch"} <= classes(graph)
    assert "SetLatentNoiseMask" not in classes(graph)
    assert node(graph, "KSampler")["denoise"] == 0.75
    assert node(graph, "LoadImage")["image"].endswith("-image.png [temp]")
    image = await api.get(body["data"][0]["url"])
    assert decode(await image.read()).size == (320, 200)


async def test_size_auto_cuts_the_source_to_whole_latent_pixels(api: TestClient) -> None:
    status, body = await edit(api, form(picture(203, 130), prompt="x"))
    assert status == 200, body
    assert body["size"] == "200x128"


async def test_an_explicit_size_scales_the_source(api: TestClient, standin: ComfyStandIn) -> None:
    status, body = await edit(api, form(picture(320, 200), prompt="x", size="128x128", response_format="b64_json"))
    assert status == 200, body
    assert decode(base64.b64decode(body["data"][0]["b64_json"])).size == (128, 128)
    scale = node(await last_graph(standin), "ImageScale")
    assert (scale["width"], scale["height"], scale["crop"]) == (128, 128, "center")


async def test_a_mask_repaints_only_its_transparent_side(api: TestClient, standin: ComfyStandIn) -> None:
    status, body = await edit(
        api, form(solid(256, 256), mask(256, 256), prompt="a window", model="sd15", response_format="b64_json")
    )
    assert status == 200, body
    used = body["_hal0"]
    assert used["template"] == "sd-1.5-inpaint" and used["edit"]["mode"] == "inpaint" and used["edit"]["mask"] == "mask"
    graph = await last_graph(standin)
    assert node(graph, "LoadImageMask") == {"image": node(graph, "LoadImageMask")["image"], "channel": "alpha"}
    assert node(graph, "LoadImageMask")["image"].endswith("-mask.png [temp]")
    out = decode(base64.b64decode(body["data"][0]["b64_json"])).convert("RGB")
    kept = out.getpixel((200, 128))
    assert all(abs(a - b) <= 8 for a, b in zip(kept, RED)), kept  # the opaque side is the source
    assert out.crop((0, 0, 100, 256)).getcolors(10_000) != [(100 * 256, RED)]  # the transparent side is new


async def test_a_transparent_image_without_mask_is_its_own_mask(api: TestClient, standin: ComfyStandIn) -> None:
    status, body = await edit(api, form(picture(transparent_left=True), prompt="x"))
    assert status == 200, body
    assert body["_hal0"]["edit"]["mask"] == "image"
    graph = await last_graph(standin)
    assert node(graph, "LoadImageMask")["image"] == node(graph, "LoadImage")["image"]
    assert standin.counters.uploads == 1


async def test_strength_n_and_extras_reach_the_graph(api: TestClient, standin: ComfyStandIn) -> None:
    status, body = await edit(
        api, form(picture(128, 128), prompt="x", n=2, strength=0.4, seed=7, steps=3, response_format="b64_json")
    )
    assert status == 200, body
    assert len(body["data"]) == 2 and body["_hal0"]["seed"] == 7
    graph = await last_graph(standin)
    assert node(graph, "KSampler")["denoise"] == 0.4 and node(graph, "KSampler")["steps"] == 3
    assert node(graph, "RepeatLatentBatch")["amount"] == 2


async def test_the_first_of_several_images_is_edited(api: TestClient) -> None:
    data = aiohttp.FormData()
    data.add_field("prompt", "x")
    data.add_field("image[]", picture(128, 96), filename="a.png")
    data.add_field("image[]", picture(64, 64), filename="b.png")
    status, body = await edit(api, data)
    assert status == 200, body
    assert body["_hal0"]["edit"]["source_size"] == "128x96"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
async def test_jpeg_and_webp_sources_keep_their_extension(api: TestClient, standin: ComfyStandIn, fmt: str) -> None:
    status, body = await edit(api, form(picture(fmt=fmt), prompt="x"))
    assert status == 200, body
    ext = {"JPEG": ".jpg", "WEBP": ".webp"}[fmt]
    assert node(await last_graph(standin), "LoadImage")["image"].endswith(f"-image{ext} [temp]")


async def test_output_format_is_applied_to_edits(api: TestClient) -> None:
    status, body = await edit(api, form(picture(), prompt="x", output_format="webp", output_compression=40))
    assert status == 200, body
    url = body["data"][0]["url"]
    assert url.endswith(".webp") and body["output_format"] == "webp"
    image = await api.get(url)
    assert image.content_type == "image/webp"
    assert decode(await image.read()).format == "WEBP"


@pytest.mark.parametrize(
    ("make", "status", "code", "param"),
    [
        (lambda: form(picture(), prompt=""), 422, "image.prompt_required", "prompt"),
        (lambda: form(None, prompt="x"), 422, "image.invalid_image", "image"),
        (lambda: form(b"not a picture", prompt="x"), 422, "image.invalid_image", "image"),
        (lambda: form(picture(fmt="GIF"), prompt="x"), 422, "image.invalid_image", "image"),
        (lambda: form(picture(256, 256), mask(128, 128), prompt="x"), 422, "image.invalid_mask", "mask"),
        (lambda: form(picture(), picture(), prompt="x"), 422, "image.invalid_mask", "mask"),
        (lambda: form(picture(), prompt="x", model="dall-e-2"), 404, "image.model_not_curated", "model"),
        (lambda: form(picture(), prompt="x", n="two"), 422, "image.invalid_parameter", "n"),
        (lambda: form(picture(), prompt="x", strength=0), 422, "image.invalid_parameter", "strength"),
        (lambda: form(picture(), prompt="x", strength=1.5), 422, "image.invalid_parameter", "strength"),
        (lambda: form(picture(), prompt="x", stream="maybe"), 422, "image.invalid_parameter", "stream"),
        (lambda: form(picture(), prompt="x", partial_images=4), 422, "image.invalid_parameter", "partial_images"),
        (lambda: form(picture(), prompt="x", output_format="gif"), 422, "image.invalid_parameter", "output_format"),
        (lambda: form(picture(), prompt="x", size="100x100"), 422, "image.invalid_size", "size"),
        (lambda: form(picture(), prompt="x", stpes=4), 422, "request.unknown_field", "stpes"),
        (lambda: form(picture(), prompt="x", extra_body="{}"), 422, "request.unknown_field", "extra_body"),
    ],
)
async def test_bad_edits_are_refused_before_comfyui_sees_anything(
    api: TestClient, standin: ComfyStandIn, make: Any, status: int, code: str, param: str
) -> None:
    got, body = await edit(api, make())
    assert (got, body["error"]["code"], body["error"]["param"]) == (status, code, param), body
    assert standin.counters.uploads == 0 and standin.counters.prompts_submitted == 0


async def test_json_is_an_unsupported_media_type(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(EDITS, json={"prompt": "x", "image": "aGk="})
    body = await resp.json()
    assert resp.status == 415 and body["error"]["code"] == "request.unsupported_media_type"
    assert body["error"]["details"] == {"content_type": "application/json", "accepted": ["multipart/form-data"]}


async def test_a_broken_multipart_body_is_a_400(api: TestClient) -> None:
    resp = await api.post(
        EDITS, data=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )  # fmt: skip
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "request.invalid_form"


async def test_an_upload_over_the_limit_is_a_413(aiohttp_client: Any, bridge_config: Any, standin: ComfyStandIn) -> None:
    api = await aiohttp_client(create_app(bridge_config(image={"max_upload_bytes": 4096})))
    big = noisy(128, 128)
    assert len(big) > 4096
    resp = await api.post(EDITS, data=form(big, prompt="x"))
    body = await resp.json()
    assert resp.status == 413 and body["error"]["code"] == "image.upload_too_large"
    assert body["error"]["details"] == {"max_bytes": 4096} and body["error"]["param"] == "image"
    assert standin.counters.uploads == 0


async def test_uploads_bigger_than_a_json_body_are_fine(api: TestClient) -> None:
    big = noisy(512, 512)  # ~0.8 MB: far over server.max_body_bytes (256 KiB), under max_upload_bytes
    assert len(big) > 256 * 1024
    status, body = await edit(api, form(big, prompt="x", size="128x128"))
    assert status == 200, body


async def test_a_model_without_edit_templates_says_which_key_is_missing(
    aiohttp_client: Any, bridge_config: Any, standin: ComfyStandIn
) -> None:
    config = bridge_config(models={"mine": {"template": "sd-1.5", "checkpoint": "v1-5-pruned-emaonly.safetensors"}})
    api = await aiohttp_client(create_app(config))
    status, body = await edit(api, form(picture(), prompt="x", model="mine"))
    assert status == 422 and body["error"]["param"] == "model"
    assert "models.mine.img2img_template" in body["error"]["message"]
    assert standin.counters.uploads == 0


async def test_sequential_edits_reuse_the_same_file_names(api: TestClient, standin: ComfyStandIn) -> None:
    for index in range(6):
        status, body = await edit(api, form(picture(128 + 8 * index, 128), mask(128 + 8 * index, 128), prompt="x"))
        assert status == 200, body
    names = staged_files(standin)
    assert len(names) == 2 and all("-edit0-" in name for name in names), names  # one image, one mask: slot 0


async def test_concurrent_edits_stay_within_the_slots(
    aiohttp_client: Any, bridge_config: Any, standin: ComfyStandIn
) -> None:
    api = await aiohttp_client(create_app(bridge_config(image={"edit_slots": 2})))
    standin.settings.step_seconds = 0.02
    colours = [(40 * i + 20, 200 - 30 * i, 90) for i in range(5)]
    results = await asyncio.gather(
        *(edit(api, form(solid(128, 128, c), mask(128, 128), prompt="x", response_format="b64_json")) for c in colours)
    )
    assert [status for status, _ in results] == [200] * 5
    assert len(staged_files(standin)) <= 2 * 2  # two slots, each an image and a mask
    for colour, (_, body) in zip(colours, results):
        kept = decode(base64.b64decode(body["data"][0]["b64_json"])).convert("RGB").getpixel((100, 64))
        assert all(abs(a - b) <= 8 for a, b in zip(kept, colour)), (kept, colour)  # its own upload, not another's


async def test_comfyui_down_at_upload_time_is_a_503(api: TestClient, standin: ComfyStandIn) -> None:
    await standin.stop()
    status, body = await edit(api, form(picture(), prompt="x"))
    assert status == 503 and body["error"]["code"] == "image.engine_unavailable"


async def test_a_huge_text_field_is_a_413(api: TestClient) -> None:
    status, body = await edit(api, form(picture(), prompt="x" * (300 * 1024)))
    assert status == 413 and body["error"]["code"] == "request.body_too_large" and body["error"]["param"] == "prompt"


async def test_too_many_parts_is_a_413(api: TestClient) -> None:
    data = form(picture(), prompt="x")
    for index in range(70):
        data.add_field(f"junk{index}", "1")
    status, body = await edit(api, data)
    assert status == 413 and body["error"]["code"] == "request.body_too_large"


async def test_a_repeated_field_and_a_text_mask_are_refused(api: TestClient) -> None:
    data = form(picture(), prompt="x")
    data.add_field("prompt", "y")
    status, body = await edit(api, data)
    assert (status, body["error"]["param"]) == (422, "prompt")
    data = form(picture(), prompt="x")
    data.add_field("mask", "not a file")
    status, body = await edit(api, data)
    assert (status, body["error"]["code"]) == (422, "image.invalid_mask")


async def test_a_cut_off_body_is_a_400(api: TestClient) -> None:
    whole = (
        b"--xyz\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n"
        b"--xyz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
    ) + picture()
    resp = await api.post(EDITS, data=whole, headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == "request.invalid_form"
