"""Image-input graphs on the stand-in: LoadImage, img2img and inpainting, as ComfyUI 0.3.64 runs them.

LoadImage decodes the uploaded file (size, frames, MASK = 1 - alpha), VAEEncode crops to multiples
of 8, the output image follows the latent, and a masked render keeps the source outside the mask
(so a test can tell which side of a mask was repainted). Recorded: ws_messages_error_loadimage.jsonl,
history_error_loadimage.json, ws_messages_img2img.jsonl; the rest follows nodes.py (STANDIN-NOTES.md).
"""

from __future__ import annotations

import copy
import io
from typing import Any

import aiohttp
import pytest
from PIL import Image as PILImage

from tests.support.comfyui_standin import SOURCE_NODES, ComfyStandIn
from tests.support.standin_client import (
    CLIENT,
    capture,
    connect,
    get_json,
    history_entry,
    run,
    summary,
    upload_form,
)

SD15 = "v1-5-pruned-emaonly.safetensors"


@pytest.fixture
async def comfy():
    async with ComfyStandIn() as standin:
        yield standin


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


def png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def gradient(width: int, height: int, transparent_left: bool = False) -> PILImage.Image:
    """A picture whose every pixel is known; with ``transparent_left`` its left half has alpha 0."""
    image = PILImage.new("RGBA", (width, height))
    image.putdata([(x * 255 // width, y * 255 // height, 128, 255) for y in range(height) for x in range(width)])
    if transparent_left:
        image.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    return image


async def put(session: aiohttp.ClientSession, comfy: ComfyStandIn, data: bytes, name: str) -> str:
    async with session.post(f"{comfy.url}/upload/image", data=upload_form(data, name)) as resp:
        assert resp.status == 200
        return str((await resp.json())["name"])


def graph(image: str, latent_nodes: dict[str, dict], latent_from: str, denoise: float = 0.75) -> dict:
    """Checkpoint, LoadImage "10", the given latent nodes, KSampler "3", VAEDecode "8", SaveImage "9"."""
    prompt: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SD15}},
        "10": {"class_type": "LoadImage", "inputs": {"image": image}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 5, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": denoise,
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": [latent_from, 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "edit", "images": ["8", 0]}},
    }  # fmt: skip
    prompt.update(copy.deepcopy(latent_nodes))
    return {"prompt": prompt, "client_id": CLIENT}


IMG2IMG = {"11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}}
INPAINT = {"11": {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["10", 1], "grow_mask_by": 6}}}
NOISE_MASK = {
    "11": {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}},
    "12": {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["11", 0], "mask": ["10", 1]}},
}


async def render(session: aiohttp.ClientSession, comfy: ComfyStandIn, body: dict) -> list[PILImage.Image]:
    """Run the graph; the saved images, fetched with /view as a client does."""
    ws = await connect(session, comfy)
    prompt_id, messages = await run(session, comfy, ws, body)
    await ws.close()
    assert "execution_success" in [m.get("type") for m in messages], summary(messages)
    images = []
    for ref in (await history_entry(session, comfy, prompt_id))["outputs"]["9"]["images"]:
        async with session.get(f"{comfy.url}/view", params=ref) as resp:
            images.append(PILImage.open(io.BytesIO(await resp.read())).convert("RGB"))
    return images


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(("size", "expected"), [((768, 512), (768, 512)), ((770, 515), (768, 512)), ((64, 96), (64, 96))])
async def test_img2img_output_has_the_uploads_size_cut_to_multiples_of_8(comfy, session, size, expected):
    name = await put(session, comfy, png(PILImage.new("RGB", size, (10, 20, 30))), "photo.png")
    (image,) = await render(session, comfy, graph(name, IMG2IMG, "11"))
    assert image.size == expected


async def test_load_image_straight_to_save_keeps_the_pixels(comfy, session):
    source = gradient(40, 24).convert("RGB")
    name = await put(session, comfy, png(source), "g.png")
    body = {"prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
                       "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "copy", "images": ["1", 0]}}},
            "client_id": CLIENT}  # fmt: skip
    (image,) = await render(session, comfy, body)
    assert list(image.getdata()) == list(source.getdata())


async def test_an_upload_in_a_subfolder_is_loaded_by_its_path(comfy, session):
    async with session.post(f"{comfy.url}/upload/image", data=upload_form(png(PILImage.new("RGB", (48, 40))), "in.png", subfolder="hal0")) as resp:
        assert resp.status == 200
    (image,) = await render(session, comfy, graph("hal0/in.png", IMG2IMG, "11"))
    assert image.size == (48, 40)


async def test_a_temp_upload_is_loaded_by_its_annotated_name(comfy, session):
    # folder_paths.annotated_filepath: "name [temp]" reads from the temp folder (wiped at ComfyUI start)
    async with session.post(f"{comfy.url}/upload/image", data=upload_form(png(PILImage.new("RGB", (24, 16))), "t.png", type="temp")) as resp:
        assert (await resp.json())["type"] == "temp"
    (image,) = await render(session, comfy, graph("t.png [temp]", IMG2IMG, "11"))
    assert image.size == (24, 16)


async def test_an_exif_rotated_jpeg_loads_upright(comfy, session):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees
    buffer = io.BytesIO()
    PILImage.new("RGB", (80, 48), (200, 10, 10)).save(buffer, format="JPEG", exif=exif)
    name = await put(session, comfy, buffer.getvalue(), "phone.jpg")
    (image,) = await render(session, comfy, graph(name, IMG2IMG, "11"))
    assert image.size == (48, 80)


async def test_every_frame_of_an_animation_is_a_batch_item(comfy, session):
    frames = [PILImage.new("RGB", (32, 32), (i * 60, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    name = await put(session, comfy, buffer.getvalue(), "anim.gif")
    images = await render(session, comfy, graph(name, IMG2IMG, "11"))
    assert [i.size for i in images] == [(32, 32)] * 3


async def test_a_file_overwritten_under_its_name_is_loaded_again(comfy, session):
    name = await put(session, comfy, png(PILImage.new("RGB", (64, 64))), "same.png")
    await render(session, comfy, graph(name, IMG2IMG, "11"))
    async with session.post(f"{comfy.url}/upload/image", data=upload_form(png(PILImage.new("RGB", (128, 64))), name, overwrite="true")):
        pass
    (image,) = await render(session, comfy, graph(name, IMG2IMG, "11"))
    assert image.size == (128, 64)  # LoadImage.IS_CHANGED hashes the file, so the cache does not answer


# --------------------------------------------------------------------------- masks


def kept_and_repainted(output: PILImage.Image, source: PILImage.Image) -> tuple[float, float]:
    """Share of unchanged pixels in the right (opaque) and the left (transparent) half, 8 px from the edge."""
    width, height = source.size
    src, out = source.convert("RGB"), output.convert("RGB")

    def same(xs: range) -> float:
        points = [(x, y) for x in xs for y in range(height)]
        return sum(src.getpixel(p) == out.getpixel(p) for p in points) / len(points)

    return same(range(width // 2 + 8, width)), same(range(width // 2 - 8))


@pytest.mark.parametrize("latent_nodes", [INPAINT, NOISE_MASK], ids=["VAEEncodeForInpaint", "SetLatentNoiseMask"])
async def test_transparent_pixels_are_repainted_and_opaque_ones_kept(comfy, session, latent_nodes):
    source = gradient(64, 64, transparent_left=True)
    name = await put(session, comfy, png(source), "masked.png")
    latent_from = "12" if "12" in latent_nodes else "11"
    (image,) = await render(session, comfy, graph(name, latent_nodes, latent_from))
    kept, repainted_unchanged = kept_and_repainted(image, source)
    assert kept == 1.0
    assert repainted_unchanged < 0.1


async def test_an_opaque_image_has_an_empty_mask_so_inpainting_changes_nothing(comfy, session):
    source = gradient(64, 64).convert("RGB")
    name = await put(session, comfy, png(source), "opaque.png")
    (image,) = await render(session, comfy, graph(name, INPAINT, "11"))
    assert list(image.getdata()) == list(source.getdata())


async def test_a_separate_mask_file_through_load_image_mask(comfy, session):
    source = gradient(64, 64).convert("RGB")
    mask = PILImage.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))
    image_name = await put(session, comfy, png(source), "photo.png")
    mask_name = await put(session, comfy, png(mask), "photo-mask.png")
    nodes = {
        "13": {"class_type": "LoadImageMask", "inputs": {"image": mask_name, "channel": "alpha"}},
        "11": {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["13", 0], "grow_mask_by": 6}},
    }
    (image,) = await render(session, comfy, graph(image_name, nodes, "11"))
    kept, repainted_unchanged = kept_and_repainted(image, source)
    assert (kept, repainted_unchanged < 0.1) == (1.0, True)


async def test_load_image_mask_colour_channels_are_not_inverted(comfy, session):
    source = gradient(64, 64).convert("RGB")
    mask = PILImage.new("RGB", (64, 64), (0, 0, 0))
    mask.paste((255, 0, 0), (0, 0, 32, 64))  # red = 1.0 = repaint on the left
    image_name = await put(session, comfy, png(source), "photo.png")
    mask_name = await put(session, comfy, png(mask), "red-mask.png")
    nodes = {
        "13": {"class_type": "LoadImageMask", "inputs": {"image": mask_name, "channel": "red"}},
        "11": {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["13", 0], "grow_mask_by": 0}},
    }
    (image,) = await render(session, comfy, graph(image_name, nodes, "11"))
    kept, repainted_unchanged = kept_and_repainted(image, source)
    assert (kept, repainted_unchanged < 0.1) == (1.0, True)


# --------------------------------------------------------------------------- errors and definitions


async def test_non_image_upload_fails_in_load_image_as_recorded(comfy, session):
    recorded = capture("history_error_loadimage.json")
    ((_, entry_recorded),) = recorded.items()
    await put(session, comfy, b"this is not an image", "corrupt.png")
    ws = await connect(session, comfy)
    body = {"prompt": entry_recorded["prompt"][2], "client_id": CLIENT}
    prompt_id, messages = await run(session, comfy, ws, body)
    assert summary(messages) == summary(capture("ws_messages_error_loadimage.jsonl"))
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    recorded_error = entry_recorded["status"]["messages"][-1][1]
    assert error["exception_message"] == f"cannot identify image file '{comfy.input_dir / 'corrupt.png'}'\n"
    for key in ("node_id", "node_type", "executed", "exception_type", "current_inputs", "current_outputs"):
        assert error[key] == recorded_error[key], key
    entry = await history_entry(session, comfy, prompt_id)
    assert (entry["outputs"], entry["status"]["status_str"], entry["status"]["completed"]) == ({}, "error", False)
    assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in entry_recorded["status"]["messages"]]


async def test_load_image_of_a_missing_file_fails_its_own_validation(comfy, session):
    body = graph("absent.png", IMG2IMG, "11")
    async with session.post(f"{comfy.url}/prompt", json=body) as resp:
        answer = await resp.json()
    assert resp.status == 400
    (error,) = answer["node_errors"]["10"]["errors"]
    assert (error["type"], error["details"]) == ("custom_validation_failed", "image - Invalid image file: absent.png")


async def test_load_image_mask_channel_is_checked_against_its_list(comfy, session):
    name = await put(session, comfy, png(gradient(8, 8)), "m.png")
    nodes = {
        "13": {"class_type": "LoadImageMask", "inputs": {"image": name, "channel": "purple"}},
        "11": {"class_type": "VAEEncodeForInpaint", "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["13", 0], "grow_mask_by": 6}},
    }
    async with session.post(f"{comfy.url}/prompt", json=graph(name, nodes, "11")) as resp:
        answer = await resp.json()
    assert [e["type"] for e in answer["node_errors"]["13"]["errors"]] == ["value_not_in_list"]


async def test_grow_mask_by_range_comes_from_the_node_definition(comfy, session):
    name = await put(session, comfy, png(gradient(8, 8)), "m.png")
    body = graph(name, INPAINT, "11")
    body["prompt"]["11"]["inputs"]["grow_mask_by"] = 65
    async with session.post(f"{comfy.url}/prompt", json=body) as resp:
        answer = await resp.json()
    assert [e["type"] for e in answer["node_errors"]["11"]["errors"]] == ["value_bigger_than_max"]


async def test_source_written_nodes_exist_in_the_recorded_server(comfy, session):
    recorded_names = set(capture("object_info_node_names.json"))
    assert set(SOURCE_NODES) <= recorded_names
    info = await get_json(session, f"{comfy.url}/object_info/VAEEncodeForInpaint")
    assert info["VAEEncodeForInpaint"]["input_order"] == {"required": ["pixels", "vae", "mask", "grow_mask_by"]}
