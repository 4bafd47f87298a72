"""Cheap, real PNG files for tests (stdlib only).

The ComfyUI stand-in writes one of these per generated image, so they must be
fast at 1024x1024: one pseudo-random row is made from the seed and every other
row is that row rotated, which zlib level 1 compresses quickly (the match is
always within its window) while the pixels still differ from seed to seed.
"""

from __future__ import annotations

import random
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_RGB = 2
_BIT_DEPTH = 8
_CHANNELS = 3


def _chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC over type + payload."""
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def noise_rgb(width: int, height: int, seed: int) -> bytes:
    """Raw 8-bit RGB pixels (``width * height * 3`` bytes): a seeded noise row, rotated by one pixel per line.

    The same pixels ``make_png`` encodes, for code that composes images (the stand-in's inpainting).
    """
    stride = width * _CHANNELS
    base = random.Random(seed).randbytes(stride)
    doubled = base + base
    return b"".join(doubled[(y * _CHANNELS) % stride : (y * _CHANNELS) % stride + stride] for y in range(height))


def _scanlines(width: int, rgb: bytes) -> bytes:
    """Filter-type-0 scanlines: a zero byte before every row."""
    stride = width * _CHANNELS
    rows = bytearray()
    for start in range(0, len(rgb), stride):
        rows += b"\x00"
        rows += rgb[start : start + stride]
    return bytes(rows)


def make_png(width: int, height: int, seed: int, text: dict[str, str] | None = None) -> bytes:
    """A valid 8-bit RGB PNG of ``width`` x ``height`` seeded noise; ``text`` adds tEXt chunks.

    ComfyUI's SaveImage stores the prompt as a ``prompt`` tEXt chunk, hence ``text``.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"PNG size must be positive, got {width}x{height}")
    return encode_png(width, height, noise_rgb(width, height, seed), text)


def encode_png(width: int, height: int, rgb: bytes, text: dict[str, str] | None = None) -> bytes:
    """Raw 8-bit RGB pixels as a PNG (zlib level 1: fast, and the noise rows still compress)."""
    if width <= 0 or height <= 0 or len(rgb) != width * height * _CHANNELS:
        raise ValueError(f"need {width}x{height} RGB pixels, got {len(rgb)} bytes")
    header = struct.pack(">IIBBBBB", width, height, _BIT_DEPTH, _COLOR_TYPE_RGB, 0, 0, 0)
    parts = [PNG_SIGNATURE, _chunk(b"IHDR", header)]
    for key, value in (text or {}).items():
        parts.append(_chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1", "replace")))
    parts.append(_chunk(b"IDAT", zlib.compress(_scanlines(width, rgb), 1)))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR; ValueError when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_text(data: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG as a dict (to check what SaveImage embedded)."""
    png_size(data)
    out: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        payload = data[pos + 8 : pos + 8 + length]
        if kind == b"tEXt":
            key, _, value = payload.partition(b"\x00")
            out[key.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return out
