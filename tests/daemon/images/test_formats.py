"""Output formats: png passes through untouched, jpeg/webp are encoded; the cache keeps the extension."""

from __future__ import annotations

from pathlib import Path

import pytest
from hal0_bridge.errors import ApiError
from hal0_bridge.images.cache import ImageCache
from hal0_bridge.images.formats import FORMATS, encode, encode_all

from tests.support.pictures import decode, picture


def test_png_is_passed_through_byte_for_byte() -> None:
    png = picture(128, 128)
    assert encode(png, "png", 10) is png


@pytest.mark.parametrize(("fmt", "pillow"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_jpeg_and_webp_are_real_files_of_the_same_size(fmt: str, pillow: str) -> None:
    image = decode(encode(picture(200, 120), fmt, 90))
    assert (image.format, image.size) == (pillow, (200, 120))


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_compression_is_the_quality(fmt: str) -> None:
    png = picture(256, 256, mode="RGB")
    assert len(encode(png, fmt, 5)) < len(encode(png, fmt, 95))


def test_an_rgba_source_becomes_rgb_jpeg() -> None:
    assert decode(encode(picture(64, 64, mode="RGBA", transparent_left=True), "jpeg", 80)).mode == "RGB"


async def test_encode_all_keeps_order() -> None:
    images = [picture(64, 64), picture(96, 64)]
    out = await encode_all(images, "webp", 50)
    assert [decode(x).size for x in out] == [(64, 64), (96, 64)]


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_cache_names_keep_the_extension_and_content_type(tmp_path: Path, fmt: str) -> None:
    cache = ImageCache(tmp_path, max_images=10, max_bytes=10_000_000)
    await cache.open()
    spec = FORMATS[fmt]
    name = await cache.store(b"bytes", spec)
    assert name.endswith(spec.extension)
    assert cache.path(name).read_bytes() == b"bytes"
    assert cache.content_type(name) == spec.content_type


async def test_the_cache_index_rebuilds_every_format(tmp_path: Path) -> None:
    first = ImageCache(tmp_path, max_images=10, max_bytes=10_000_000)
    await first.open()
    names = [await first.store(b"x", spec) for spec in FORMATS.values()]
    again = ImageCache(tmp_path, max_images=10, max_bytes=10_000_000)
    await again.open()
    assert all(again.path(name).is_file() for name in names)


@pytest.mark.parametrize("name", ["0" * 32 + ".gif", "0" * 32 + ".jpeg", "0" * 32 + ".PNG"])
def test_other_extensions_are_a_cache_miss(name: str) -> None:
    with pytest.raises(ApiError) as info:
        ImageCache.content_type(name)
    assert info.value.code == "image.cache_miss"
