"""Output formats: ``png`` (ComfyUI's own file, untouched), ``jpeg`` and ``webp`` (encoded here with Pillow).

One table names each format's file extension and content type, so the cache, its route and the
answers agree. Encoding is CPU work (a 1024x1024 WebP takes ~150 ms), so :func:`encode_all` runs it
in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True, slots=True)
class OutputFormat:
    name: str  # what clients send as output_format
    extension: str  # of the cache file, with the dot
    content_type: str


FORMATS: dict[str, OutputFormat] = {
    "png": OutputFormat("png", ".png", "image/png"),
    "jpeg": OutputFormat("jpeg", ".jpg", "image/jpeg"),
    "webp": OutputFormat("webp", ".webp", "image/webp"),
}
DEFAULT_FORMAT = "png"
# OpenAI's default for output_compression (0-100); for jpeg and webp it is Pillow's quality
DEFAULT_COMPRESSION = 100
BY_EXTENSION: dict[str, OutputFormat] = {f.extension: f for f in FORMATS.values()}


def encode(png: bytes, fmt: str, compression: int) -> bytes:
    """``png`` as ``fmt`` (blocking). PNG is passed through as ComfyUI wrote it; ``compression`` is
    the quality of jpeg/webp (OpenAI applies it only to those two as well)."""
    if fmt == "png":
        return png
    with Image.open(io.BytesIO(png)) as image:
        pixels = image.convert("RGB") if fmt == "jpeg" or image.mode not in ("RGB", "RGBA") else image
        out = io.BytesIO()
        if fmt == "jpeg":
            pixels.save(out, format="JPEG", quality=compression)
        else:
            pixels.save(out, format="WEBP", quality=compression, method=4)
        return out.getvalue()


async def encode_all(images: list[bytes], fmt: str, compression: int) -> list[bytes]:
    """Every image in ``fmt``, in one worker thread (nothing to do, and no thread, for png)."""
    if fmt == "png":
        return images
    return await asyncio.to_thread(lambda: [encode(png, fmt, compression) for png in images])
