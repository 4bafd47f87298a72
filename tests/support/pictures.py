"""Small real pictures for edit tests (Pillow): opaque, half transparent, masks, other formats."""

from __future__ import annotations

import io

from PIL import Image


def picture(width: int = 256, height: int = 256, *, fmt: str = "PNG", mode: str = "RGB", transparent_left: bool = False) -> bytes:
    """A gradient picture in ``fmt``; with ``transparent_left`` (RGBA) its left half has alpha 0."""
    image = Image.linear_gradient("L").resize((width, height)).convert(mode if mode != "P" else "RGB")
    if mode == "P":
        image = image.convert("P")
    if transparent_left:
        image = image.convert("RGBA")
        image.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def mask(width: int = 256, height: int = 256, *, repaint_left: bool = True) -> bytes:
    """An RGBA PNG mask: opaque everywhere but its left half (transparent = repaint)."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    if repaint_left:
        image.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def noisy(width: int, height: int) -> bytes:
    """A PNG that does not compress (noise): about 3 bytes per pixel."""
    channels = [Image.effect_noise((width, height), 90 + 10 * i) for i in range(3)]
    out = io.BytesIO()
    Image.merge("RGB", channels).save(out, format="PNG")
    return out.getvalue()
