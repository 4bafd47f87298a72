"""An edit's uploads are checked before the GPU: formats, sizes, damage, the mask's rules, transparency."""

from __future__ import annotations

import pytest
from hal0_bridge.errors import ApiError
from hal0_bridge.images.inputs import EditInput, inspect_edit

from tests.support.pictures import mask, picture

MAX_SIDE = 4096


def refused(image: bytes, mask_data: bytes | None = None, max_side: int = MAX_SIDE) -> ApiError:
    with pytest.raises(ApiError) as info:
        inspect_edit(image, mask_data, max_side)
    return info.value


@pytest.mark.parametrize(("fmt", "name"), [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp")])
def test_png_jpeg_and_webp_are_accepted_with_their_size(fmt: str, name: str) -> None:
    edit = inspect_edit(picture(320, 200, fmt=fmt), None, MAX_SIDE)
    assert (edit.image.format, edit.image.width, edit.image.height) == (name, 320, 200)
    assert not edit.inpaint and edit.mask_source == "none"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_formats_are_an_invalid_image(fmt: str) -> None:
    err = refused(picture(fmt=fmt))
    assert (err.status, err.code, err.param) == (422, "image.invalid_image", "image")
    assert fmt in err.message and err.details["accepted"] == ["jpeg", "png", "webp"]


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_bytes_that_are_no_image_are_an_invalid_image(data: bytes) -> None:
    assert refused(data).code == "image.invalid_image"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_cut_off_file_is_an_invalid_image(fmt: str) -> None:
    data = picture(512, 512, fmt=fmt)
    err = refused(data[: len(data) * 2 // 3])
    assert (err.code, err.param) == ("image.invalid_image", "image")  # Pillow's open already refuses some


def test_a_png_with_a_corrupted_chunk_is_an_invalid_image() -> None:
    data = bytearray(picture(256, 256))
    data[len(data) // 2] ^= 0xFF  # inside IDAT: its CRC no longer matches
    assert refused(bytes(data)).code == "image.invalid_image"


@pytest.mark.parametrize(("width", "height"), [(32, 256), (256, 63), (4104, 64)])
def test_sides_outside_the_bounds_are_an_invalid_image(width: int, height: int) -> None:
    err = refused(picture(width, height))
    assert err.code == "image.invalid_image"
    assert err.details == {"width": width, "height": height, "min": 64, "max": MAX_SIDE}


def test_an_opaque_rgba_image_is_img2img() -> None:
    edit = inspect_edit(picture(mode="RGBA"), None, MAX_SIDE)
    assert edit.image.has_alpha and not edit.image.transparent
    assert not edit.inpaint


def test_an_image_with_transparent_pixels_is_its_own_mask() -> None:
    edit = inspect_edit(picture(transparent_left=True), None, MAX_SIDE)
    assert edit.image.transparent and edit.inpaint
    assert edit.mask_source == "image"


def test_a_mask_makes_an_inpaint_edit() -> None:
    edit = inspect_edit(picture(), mask(), MAX_SIDE)
    assert isinstance(edit, EditInput) and edit.inpaint and edit.mask_source == "mask"
    assert edit.mask is not None and edit.mask.format == "png"


def test_a_mask_of_another_size_is_an_invalid_mask() -> None:
    err = refused(picture(256, 256), mask(256, 128))
    assert (err.status, err.code, err.param) == (422, "image.invalid_mask", "mask")
    assert err.details == {"mask": "256x128", "image": "256x256"}


def test_a_mask_without_alpha_is_an_invalid_mask() -> None:
    err = refused(picture(), picture())
    assert err.code == "image.invalid_mask" and "alpha" in err.message


def test_a_mask_that_is_not_a_png_is_an_invalid_mask() -> None:
    err = refused(picture(), picture(fmt="WEBP", mode="RGBA"))
    assert err.code == "image.invalid_mask" and "PNG" in err.message


def test_a_broken_mask_is_an_invalid_mask_not_an_invalid_image() -> None:
    assert refused(picture(), b"garbage").code == "image.invalid_mask"


def test_the_image_is_checked_before_the_mask() -> None:
    assert refused(b"garbage", b"garbage").code == "image.invalid_image"
