"""The stand-in's /upload/image, /upload/mask and /view conversions match ComfyUI 0.3.64.

Recorded answers: upload_*.json, view_*_headers.json. Where no recording shows a case, the
expected behaviour is server.py's image_upload / upload_mask / view_image at the recorded commit
(tests/support/STANDIN-NOTES.md).
"""

from __future__ import annotations

import io
import json

import aiohttp
import pytest
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.png import make_png
from tests.support.standin_client import CAPTURES, capture, get_json, upload_form

SERVER_TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"


def png_bytes(image: PILImage.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save)
    return buffer.getvalue()


RED = png_bytes(PILImage.new("RGB", (32, 32), (255, 0, 0)))
OTHER_RED = png_bytes(PILImage.new("RGB", (32, 32), (250, 0, 0)))


@pytest.fixture
async def comfy():
    async with ComfyStandIn() as standin:
        yield standin


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


async def upload(session: aiohttp.ClientSession, comfy: ComfyStandIn, data: bytes = RED, filename: str = "red.png", route: str = "image", **fields: str) -> tuple[int, str, object]:
    async with session.post(f"{comfy.url}/upload/{route}", data=upload_form(data, filename, **fields)) as resp:
        text = await resp.text()
        body = json.loads(text) if resp.content_type == "application/json" else text
        return resp.status, resp.headers.get("Content-Type", ""), body


# --------------------------------------------------------------------------- /upload/image


async def test_upload_answers_like_capture(comfy, session):
    status, content_type, body = await upload(session, comfy, overwrite="false")
    recorded = capture("upload_image_response_1.json")
    assert (status, body) == (recorded["status"], recorded["response"])
    assert content_type == "application/json; charset=utf-8"
    assert (comfy.input_dir / "red.png").read_bytes() == RED


async def test_same_bytes_again_keep_the_name(comfy, session):
    await upload(session, comfy, overwrite="false")
    _, _, body = await upload(session, comfy, overwrite="false")
    assert body == capture("upload_image_response_2.json")["response"]
    assert sorted(p.name for p in comfy.input_dir.iterdir()) == ["red.png"]


async def test_overwrite_replaces_the_file_under_its_name(comfy, session):
    await upload(session, comfy)
    _, _, body = await upload(session, comfy, data=OTHER_RED, overwrite="true")
    assert body == capture("upload_image_response_3.json")["response"]
    assert (comfy.input_dir / "red.png").read_bytes() == OTHER_RED


@pytest.mark.parametrize("overwrite", [None, "false", "yes"])
async def test_other_bytes_under_a_taken_name_are_numbered(comfy, session, overwrite):
    fields = {} if overwrite is None else {"overwrite": overwrite}
    await upload(session, comfy, **fields)
    first = await upload(session, comfy, data=OTHER_RED, **fields)
    second = await upload(session, comfy, data=png_bytes(PILImage.new("RGB", (32, 32), (9, 0, 0))), **fields)
    assert first[2] == capture("upload_image_rename_1.json")["response"]
    assert second[2] == capture("upload_image_rename_2.json")["response"]
    assert (comfy.input_dir / "red (1).png").read_bytes() == OTHER_RED


async def test_subfolder_upload_answers_like_capture(comfy, session):
    _, _, body = await upload(session, comfy, subfolder="clients/test", type="input")
    assert body == capture("upload_image_response_subfolder.json")["response"]
    assert (comfy.input_dir / "clients" / "test" / "red.png").read_bytes() == RED


async def test_upload_without_image_field_is_empty_400(comfy, session):
    form = aiohttp.FormData()
    form.add_field("overwrite", "true")
    async with session.post(f"{comfy.url}/upload/image", data=form) as resp:
        recorded = capture("upload_image_no_file.json")
        assert (resp.status, await resp.text()) == (recorded["status"], recorded["response"])


@pytest.mark.parametrize(("type_", "folder"), [("temp", "temp_dir"), ("output", "output_dir"), ("input", "input_dir")])
async def test_type_picks_the_folder(comfy, session, type_, folder):
    _, _, body = await upload(session, comfy, type=type_)
    assert body == {"name": "red.png", "subfolder": "", "type": type_}
    assert (getattr(comfy, folder) / "red.png").is_file()


async def test_unknown_type_is_the_plain_500(comfy, session):
    # get_dir_by_type leaves type_dir unbound for other names: an UnboundLocalError in the handler.
    status, _, body = await upload(session, comfy, type="bogus")
    assert (status, body) == (500, SERVER_TROUBLE)


async def test_image_sent_as_a_plain_field_is_the_plain_500(comfy, session):
    form = aiohttp.FormData()
    form.add_field("image", "not a file")
    async with session.post(f"{comfy.url}/upload/image", data=form) as resp:
        assert (resp.status, await resp.text()) == (500, SERVER_TROUBLE)


def raw_multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    """A body whose file name is sent as is (aiohttp's FormData would percent-encode the slashes)."""
    boundary = "standinboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


async def test_a_file_name_leaving_the_folder_is_400(comfy, session):
    body, content_type = raw_multipart("../escape.png", RED)
    async with session.post(f"{comfy.url}/upload/image", data=body, headers={"Content-Type": content_type}) as resp:
        assert (resp.status, await resp.text()) == (400, "")
    assert not (comfy.data_dir / "escape.png").exists()


async def test_a_subfolder_leaving_the_folder_is_400(comfy, session):
    status, _, body = await upload(session, comfy, subfolder="../../escape")
    assert (status, body) == (400, "")
    assert not (comfy.data_dir.parent / "escape").exists()


async def test_uploads_are_served_under_api_too(comfy, session):
    async with session.post(f"{comfy.url}/api/upload/image", data=upload_form(RED)) as resp:
        assert (resp.status, await resp.json()) == (200, {"name": "red.png", "subfolder": "", "type": "input"})
    assert comfy.counters.uploads == 1


# --------------------------------------------------------------------------- combo lists


async def test_load_image_lists_top_level_image_files_only(comfy, session):
    await upload(session, comfy)
    await upload(session, comfy, filename="notes.txt", data=b"plain text")
    await upload(session, comfy, subfolder="clients/test")
    info = await get_json(session, f"{comfy.url}/object_info/LoadImage")
    assert info["LoadImage"]["input"]["required"]["image"] == [["red.png"], {"image_upload": True}]


async def test_load_image_mask_lists_every_top_level_file(comfy, session):
    await upload(session, comfy)
    await upload(session, comfy, filename="notes.txt", data=b"plain text")
    info = await get_json(session, f"{comfy.url}/object_info/LoadImageMask")
    assert info["LoadImageMask"]["input"]["required"]["image"][0] == ["notes.txt", "red.png"]


# --------------------------------------------------------------------------- /upload/mask


def original_with_text() -> bytes:
    info = PngInfo()
    info.add_text("prompt", "{}")
    return png_bytes(PILImage.new("RGB", (32, 32), (255, 0, 0)), pnginfo=info)


def half_transparent_mask(size: tuple[int, int] = (32, 32)) -> bytes:
    """Left half transparent (repaint), right half opaque (keep), as a mask editor paints it."""
    mask = PILImage.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    return png_bytes(mask)


MASK_REF = json.dumps({"filename": "red.png", "subfolder": "", "type": "input"})


async def test_mask_upload_answers_like_capture(comfy, session):
    await upload(session, comfy, data=original_with_text())
    status, _, body = await upload(session, comfy, route="mask", data=half_transparent_mask(), filename="mask.png", original_ref=MASK_REF)
    recorded = capture("upload_mask_response.json")
    assert (status, body) == (recorded["status"], recorded["response"])


async def test_mask_upload_writes_the_original_with_the_masks_alpha(comfy, session):
    await upload(session, comfy, data=original_with_text())
    await upload(session, comfy, route="mask", data=half_transparent_mask(), filename="mask.png", original_ref=MASK_REF)
    with PILImage.open(comfy.input_dir / "mask.png") as saved:
        assert saved.mode == "RGBA"
        assert saved.getpixel((4, 4)) == (255, 0, 0, 0)
        assert saved.getpixel((28, 4)) == (255, 0, 0, 255)
        assert saved.text == {"prompt": "{}"}


async def test_mask_upload_with_a_missing_original_answers_200_but_writes_nothing(comfy, session):
    ref = json.dumps({"filename": "absent.png", "type": "input"})
    status, _, body = await upload(session, comfy, route="mask", data=half_transparent_mask(), filename="mask.png", original_ref=ref)
    assert (status, body) == (200, {"name": "mask.png", "subfolder": "", "type": "input"})
    assert not (comfy.input_dir / "mask.png").exists()


async def test_mask_upload_with_a_traversing_original_writes_nothing(comfy, session):
    ref = json.dumps({"filename": "../red.png", "type": "input"})
    status, _, _ = await upload(session, comfy, route="mask", data=half_transparent_mask(), filename="mask.png", original_ref=ref)
    assert status == 200
    assert not (comfy.input_dir / "mask.png").exists()


async def test_mask_upload_finds_an_annotated_output_original(comfy, session):
    (comfy.output_dir / "ComfyUI_00001_.png").write_bytes(make_png(32, 32, 1))
    ref = json.dumps({"filename": "ComfyUI_00001_.png [output]"})
    await upload(session, comfy, route="mask", data=half_transparent_mask(), filename="mask.png", original_ref=ref)
    with PILImage.open(comfy.input_dir / "mask.png") as saved:
        assert saved.size == (32, 32) and saved.getpixel((4, 4))[3] == 0


@pytest.mark.parametrize("ref", [None, "not json"])
async def test_mask_upload_without_a_readable_original_ref_is_the_plain_500(comfy, session, ref):
    fields = {} if ref is None else {"original_ref": ref}
    status, _, body = await upload(session, comfy, route="mask", data=half_transparent_mask(), filename="mask.png", **fields)
    assert (status, body) == (500, SERVER_TROUBLE)


async def test_mask_of_another_size_is_the_plain_500(comfy, session):
    await upload(session, comfy)
    status, _, body = await upload(session, comfy, route="mask", data=half_transparent_mask((16, 16)), filename="mask.png", original_ref=MASK_REF)
    assert (status, body) == (500, SERVER_TROUBLE)


# --------------------------------------------------------------------------- /view conversions


async def view(session: aiohttp.ClientSession, comfy: ComfyStandIn, query: str) -> tuple[int, dict, bytes]:
    async with session.get(f"{comfy.url}/view?{query}") as resp:
        return resp.status, dict(resp.headers), await resp.read()


def same_header_names(headers: dict, recorded: dict) -> bool:
    """The recorded response's headers are there (values of Date/Etag/Length differ by nature)."""
    return {k for k in recorded if k not in ("Date", "Server")} <= set(headers)


async def test_view_of_an_upload_is_the_file_with_recorded_headers(comfy, session):
    await upload(session, comfy)
    status, headers, body = await view(session, comfy, "filename=red.png&type=input")
    recorded = capture("view_input_headers.json")["headers"]
    assert (status, body) == (200, RED)
    assert same_header_names(headers, recorded)
    assert (headers["Content-Type"], headers["Content-Disposition"]) == (recorded["Content-Type"], recorded["Content-Disposition"])


async def test_view_of_an_upload_in_a_subfolder(comfy, session):
    await upload(session, comfy, subfolder="clients/test")
    status, _, body = await view(session, comfy, "filename=red.png&type=input&subfolder=clients/test")
    assert (status, body) == (200, RED)


async def test_view_channel_a_is_an_alpha_png_from_memory(comfy, session):
    await upload(session, comfy)
    status, headers, body = await view(session, comfy, "filename=red.png&type=input&channel=a")
    recorded = capture("view_channel_a_headers.json")
    assert status == recorded["status"]
    assert same_header_names(headers, recorded["headers"]) and "Etag" not in headers
    assert headers["Content-Type"] == "image/png"
    # a 32x32 opaque image gives the recorded 103 bytes (the recorded red.png was 100 bytes, ours 97)
    assert len(body) == recorded["bytes"]
    with PILImage.open(io.BytesIO(body)) as alpha:
        assert alpha.mode == "RGBA" and alpha.getextrema() == ((0, 0), (0, 0), (0, 0), (255, 255))


async def test_view_channel_a_keeps_the_files_alpha(comfy, session):
    await upload(session, comfy, data=half_transparent_mask(), filename="mask.png")
    _, _, body = await view(session, comfy, "filename=mask.png&type=input&channel=a")
    with PILImage.open(io.BytesIO(body)) as alpha:
        assert (alpha.getpixel((4, 4))[3], alpha.getpixel((28, 4))[3]) == (0, 255)


async def test_view_channel_rgb_drops_alpha(comfy, session):
    await upload(session, comfy, data=half_transparent_mask(), filename="mask.png")
    status, headers, body = await view(session, comfy, "filename=mask.png&type=input&channel=rgb")
    assert (status, headers["Content-Type"]) == (200, "image/png")
    with PILImage.open(io.BytesIO(body)) as rgb:
        assert rgb.mode == "RGB"


async def test_view_channel_rgba_is_the_file(comfy, session):
    await upload(session, comfy)
    _, headers, body = await view(session, comfy, "filename=red.png&type=input&channel=rgba")
    assert body == RED and "Etag" in headers


async def test_view_preview_webp_matches_recorded_size(comfy, session):
    (comfy.output_dir / "ComfyUI_00013_.png").write_bytes((CAPTURES / "view_output_64x64.png").read_bytes())
    recorded = capture("view_preview_webp_headers.json")
    status, headers, body = await view(session, comfy, recorded["request"].split("?", 1)[1])
    assert status == recorded["status"]
    assert same_header_names(headers, recorded["headers"]) and "Etag" not in headers
    assert (headers["Content-Type"], headers["Content-Disposition"]) == ("image/webp", 'filename="ComfyUI_00013_.png"')
    assert len(body) == recorded["bytes"]  # the recorded image, encoded the same way: 2678 bytes


async def test_view_preview_jpeg_with_quality(comfy, session):
    (comfy.output_dir / "a.png").write_bytes(make_png(64, 64, 1))
    status, headers, body = await view(session, comfy, "filename=a.png&preview=jpeg;80")
    assert (status, headers["Content-Type"], body[:3]) == (200, "image/jpeg", b"\xff\xd8\xff")


@pytest.mark.parametrize("query", ["preview=png", "preview=jpeg&channel=a"])
async def test_view_preview_falls_back_to_webp(comfy, session, query):
    (comfy.output_dir / "a.png").write_bytes(make_png(16, 16, 1))
    _, headers, body = await view(session, comfy, f"filename=a.png&{query}")
    assert (headers["Content-Type"], body[8:12]) == ("image/webp", b"WEBP")


async def test_view_preview_of_a_file_that_is_not_an_image_is_the_plain_500(comfy, session):
    (comfy.output_dir / "a.png").write_bytes(b"not an image")
    status, _, body = await view(session, comfy, "filename=a.png&preview=webp")
    assert (status, body.decode()) == (500, SERVER_TROUBLE)

