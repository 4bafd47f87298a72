"""An edit's uploaded image and mask, checked before anything touches the GPU.

What OpenAI accepts for ``/v1/images/edits`` is what we accept: the image is PNG, JPEG or WebP; the
mask is a PNG with an alpha channel and the image's size, its fully transparent pixels marking what to
repaint. Without a mask, an image with transparent pixels is repainted there; an opaque one is
repainted as a whole (img2img, ``strength`` deciding how much of it survives).

Checks are cheap on purpose (the edit route's overhead target is 15 ms for a 1024x1024 PNG, and a
full PNG decode alone costs ~20 ms): Pillow reads the header (format, size, mode), then a structural
check that catches truncated or corrupted files without decoding every pixel — PNG chunk CRCs
(``verify``), a JPEG decoded at 1/8 scale (the whole entropy-coded stream is still read), WebP's RIFF
length. Only an image with an alpha channel and no mask is decoded, to learn whether any pixel is
transparent. Everything here blocks: :func:`check_edit` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import io
import struct
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from .. import errors
from ..errors import ApiError

# Pillow's format name -> ours (what OpenAI accepts for edits)
ACCEPTED = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
MIN_SIDE = 64
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


@dataclass(frozen=True, slots=True)
class SourceImage:
    """One checked upload: its bytes as sent, format, size and whether any pixel is transparent."""

    data: bytes
    format: str  # png | jpeg | webp
    width: int
    height: int
    has_alpha: bool  # an alpha channel (or a PNG tRNS chunk)
    transparent: bool  # some pixel has alpha < 255 (only looked at when it decides the template)

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


@dataclass(frozen=True, slots=True)
class EditInput:
    """The source of an edit; ``inpaint`` when a mask (or the image's own transparency) says where."""

    image: SourceImage
    mask: SourceImage | None = None

    @property
    def inpaint(self) -> bool:
        return self.mask is not None or self.image.transparent

    @property
    def mask_source(self) -> str:
        """Which upload carries the repaint mask in its alpha: ``mask``, ``image`` or ``none``."""
        if self.mask is not None:
            return "mask"
        return "image" if self.image.transparent else "none"


def _open(data: bytes, code: errors.ErrorCode, what: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ApiError(code, f"{what} is not an image Pillow can read ({err})", param=what) from None
    return image


def _truncated(image: Image.Image, data: bytes, fmt: str) -> str | None:
    """Why the file is broken, or None; reads the file's structure, not (all) its pixels."""
    try:
        if fmt == "png":
            image.verify()  # every chunk's CRC, up to IEND
        elif fmt == "jpeg":
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        elif fmt == "webp":
            if len(data) < 12 or struct.unpack("<I", data[4:8])[0] + 8 > len(data):
                return "the WebP file is shorter than its RIFF header says"
    except (OSError, ValueError, SyntaxError, struct.error) as err:
        return str(err) or type(err).__name__
    return None


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def _inspect(data: bytes, code: errors.ErrorCode, what: str, max_side: int) -> tuple[Image.Image, SourceImage]:
    if not data:
        raise ApiError(code, f"{what} is empty", param=what)
    image = _open(data, code, what)
    fmt = ACCEPTED.get(image.format or "")
    if fmt is None:
        raise ApiError(
            code,
            f"{what} is {image.format or 'an unknown format'}; use PNG, JPEG or WebP",
            param=what,
            details={"format": image.format, "accepted": sorted(ACCEPTED.values())},
        )
    width, height = image.size
    if not (MIN_SIDE <= width <= max_side and MIN_SIDE <= height <= max_side):
        raise ApiError(
            code,
            f"{what} is {width}x{height}; each side must be between {MIN_SIDE} and {max_side} pixels",
            param=what,
            details={"width": width, "height": height, "min": MIN_SIDE, "max": max_side},
        )
    source = SourceImage(data, fmt, width, height, _has_alpha(image), transparent=False)
    broken = _truncated(image, data, fmt)
    if broken is not None:
        raise ApiError(code, f"{what} is damaged or cut short: {broken}", param=what)
    return image, source


def _any_transparent(data: bytes) -> bool:
    """Decodes the image (the one costly check): is any pixel's alpha below 255?"""
    with Image.open(io.BytesIO(data)) as image:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        low, _ = rgba.getchannel("A").getextrema()
    return bool(low < 255)


def inspect_edit(image_data: bytes, mask_data: bytes | None, max_side: int) -> EditInput:
    """Check an edit's uploads (blocking); 422 ``image.invalid_image`` / ``image.invalid_mask``."""
    _, image = _inspect(image_data, errors.INVALID_IMAGE, "image", max_side)
    if mask_data is None:
        if image.has_alpha:
            try:
                transparent = _any_transparent(image_data)
            except (OSError, ValueError) as err:
                raise ApiError(errors.INVALID_IMAGE, f"image cannot be decoded: {err}", param="image") from None
            image = SourceImage(image.data, image.format, image.width, image.height, True, transparent)
        return EditInput(image)
    _, mask = _inspect(mask_data, errors.INVALID_MASK, "mask", max_side)
    if mask.format != "png":
        raise ApiError(errors.INVALID_MASK, f"mask must be a PNG, got {mask.format.upper()}", param="mask")
    if not mask.has_alpha:
        raise ApiError(
            errors.INVALID_MASK,
            "mask has no alpha channel; its fully transparent pixels mark the area to repaint",
            param="mask",
        )
    if (mask.width, mask.height) != (image.width, image.height):
        raise ApiError(
            errors.INVALID_MASK,
            f"mask is {mask.width}x{mask.height} but the image is {image.width}x{image.height}; they must match",
            param="mask",
            details={"mask": f"{mask.width}x{mask.height}", "image": f"{image.width}x{image.height}"},
        )
    return EditInput(image, mask)


async def check_edit(image_data: bytes, mask_data: bytes | None, max_side: int) -> EditInput:
    """:func:`inspect_edit` in a worker thread (Pillow work never runs on the event loop)."""
    return await asyncio.to_thread(inspect_edit, image_data, mask_data, max_side)
