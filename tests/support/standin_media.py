"""Pillow work for the ComfyUI stand-in: what ComfyUI 0.3.64 does to image files, and nothing else.

Every function here is blocking (file and pixel work): the stand-in runs them with
``asyncio.to_thread``. Each names the ComfyUI function it follows (see STANDIN-NOTES.md).

Masks follow ComfyUI's convention: a MASK value of 1 (here: 255 in an ``L`` image) means
"repaint", and LoadImage makes it from a PNG's alpha as ``1 - alpha``, so transparent pixels
are the ones an inpainting graph changes (OpenAI's edit-mask convention, too).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFilter, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from tests.support.png import encode_png, noise_rgb

# server.send_image / send_image_with_metadata: previews are saved with quality=95 and scaled
# with ImageOps.contain(BILINEAR) to args.preview_size (default 512).
PREVIEW_JPEG_QUALITY = 95
DEFAULT_PREVIEW_SIZE = 512
LATENT_SCALE = 8  # SD1.5/SDXL VAEs: one latent pixel per 8x8 image pixels


@dataclass
class Decoded:
    """What nodes.LoadImage.load_image yields, as images instead of tensors."""

    rgb: Image.Image  # first frame, RGB
    repaint: Image.Image | None  # ``L``: 255 = repaint (1 - alpha); None = ComfyUI's 64x64 zero mask
    frames: int  # batch size: frames of the first frame's size (MPO: 1)


def load_image(path: Path) -> Decoded:
    """nodes.LoadImage.load_image: every frame the size of the first, EXIF-rotated, mask = 1 - alpha.

    A file Pillow cannot read raises PIL.UnidentifiedImageError, as in ComfyUI
    (ws_messages_error_loadimage.jsonl).
    """
    with Image.open(path) as img:
        first: Image.Image | None = None
        repaint: Image.Image | None = None
        frames = 0
        for frame in ImageSequence.Iterator(img):
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            if first is not None and frame.size != first.size:
                continue
            frames += 1
            if first is None:
                first = frame.convert("RGB")
                repaint = _repaint_from_alpha(frame)
            if img.format == "MPO":
                break
        assert first is not None
        return Decoded(first, repaint, frames)


def _repaint_from_alpha(frame: Image.Image) -> Image.Image | None:
    """``1 - alpha`` for an image with alpha (or a palette with transparency), else None."""
    if "A" in frame.getbands():
        return ImageOps.invert(frame.getchannel("A"))
    if frame.mode == "P" and "transparency" in frame.info:
        return ImageOps.invert(frame.convert("RGBA").getchannel("A"))
    return None


def load_image_mask(path: Path, channel: str) -> Image.Image:
    """nodes.LoadImageMask.load_image: one channel as the mask; alpha inverted, colour channels as they are."""
    with Image.open(path) as img:
        frame = ImageOps.exif_transpose(img)
        if frame.getbands() != ("R", "G", "B", "A"):
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            frame = frame.convert("RGBA")
        band = frame.getchannel(channel[0].upper())
        return ImageOps.invert(band) if channel[0].upper() == "A" else band.copy()


def crop_to_latent(image: Image.Image) -> Image.Image:
    """comfy.sd.VAE.vae_encode_crop_pixels: each side cut down to a multiple of 8, centred."""
    width, height = image.size
    new_w, new_h = width // LATENT_SCALE * LATENT_SCALE, height // LATENT_SCALE * LATENT_SCALE
    left, top = (width % LATENT_SCALE) // 2, (height % LATENT_SCALE) // 2
    return image.crop((left, top, left + new_w, top + new_h)) if (new_w, new_h) != (width, height) else image


def inpaint_mask(repaint: Image.Image | None, size: tuple[int, int], grow_mask_by: int) -> Image.Image:
    """nodes.VAEEncodeForInpaint's noise mask: resized to the image (bilinear), cropped like the pixels,
    rounded, then grown by ``grow_mask_by`` pixels (ComfyUI convolves with a ones kernel; a max filter
    of the next odd size is the same dilation to within a pixel)."""
    full = (repaint or Image.new("L", (64, 64), 0)).resize(size, Image.Resampling.BILINEAR)
    cropped = crop_to_latent(full)
    rounded = cropped.point(lambda v: 255 if v >= 128 else 0)
    if grow_mask_by > 0:
        rounded = rounded.filter(ImageFilter.MaxFilter(grow_mask_by | 1))
    return rounded


def resize(image: Image.Image | None, size: tuple[int, int]) -> Image.Image | None:
    """ImageScale / LatentUpscale applied to an image that is carried along (None stays None)."""
    if image is None or image.size == size:
        return image
    return image.resize(size, Image.Resampling.BILINEAR)


def render_png(width: int, height: int, seed: int, source: Image.Image | None, repaint: Image.Image | None, text: dict[str, str]) -> bytes:
    """One saved image: seeded noise (a generated image), the source itself (LoadImage straight to a
    save node), or noise where ``repaint`` says and the source elsewhere (a masked render).

    A sampler with a ``noise_mask`` only changes the masked area (comfy.samplers KSampler with
    denoise_mask), so the decoded result keeps the source outside the mask: the stand-in shows
    that by copying the source there, which lets tests see which side of a mask was repainted.
    """
    if source is None:
        return encode_png(width, height, noise_rgb(width, height, seed), text)
    kept = source.convert("RGB")
    if kept.size != (width, height):
        kept = kept.resize((width, height), Image.Resampling.BILINEAR)
    if repaint is None:
        return encode_png(width, height, kept.tobytes(), text)
    generated = Image.frombytes("RGB", (width, height), noise_rgb(width, height, seed))
    mask = repaint if repaint.size == (width, height) else repaint.resize((width, height), Image.Resampling.BILINEAR)
    return encode_png(width, height, Image.composite(generated, kept, mask).tobytes(), text)


def empty_mask() -> Image.Image:
    """ComfyUI's MASK for an image without alpha: 64x64 zeros (nothing to repaint)."""
    return Image.new("L", (64, 64), 0)


def latent_preview_jpeg(width: int, height: int, seed: int, max_size: int = DEFAULT_PREVIEW_SIZE) -> bytes:
    """A latent2rgb preview frame: one pixel per latent pixel (latent_preview.Latent2RGBPreviewer),
    scaled to fit ``max_size`` with ImageOps.contain(BILINEAR) and saved as JPEG quality 95
    (server.send_image). For 256x256 that is a 32x32 image shown at 512x512, as recorded
    (ws_messages_preview_latent2rgb.jsonl: ~73 KB JPEGs)."""
    lw, lh = max(1, width // LATENT_SCALE), max(1, height // LATENT_SCALE)
    small = Image.frombytes("RGB", (lw, lh), noise_rgb(lw, lh, seed))
    shown = ImageOps.contain(small, (max_size, max_size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    shown.save(buffer, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return buffer.getvalue()


def view_variant(path: Path, preview: str | None, channel: str | None) -> tuple[bytes, str] | None:
    """server.view_image's conversions: (body, content type), or None to serve the file as stored.

    ``preview=FORMAT;QUALITY``: webp or jpeg (anything else, or an ``a`` in ``channel``, means webp;
    quality 90 unless the last part is digits); jpeg and ``channel=rgb`` drop alpha.
    Without ``preview``: ``channel=rgb`` is the image without alpha as PNG, ``channel=a`` an RGBA PNG
    whose alpha is the image's (255 when it has none) and whose colour is black; ``rgba`` or none: the file.
    """
    if preview is not None:
        with Image.open(path) as img:
            parts = preview.split(";")
            image_format = parts[0]
            if image_format not in ("webp", "jpeg") or "a" in (channel or ""):
                image_format = "webp"
            quality = int(parts[-1]) if parts[-1].isdigit() else 90
            out: Image.Image = img
            if image_format == "jpeg" or channel == "rgb":
                out = img.convert("RGB")
            buffer = io.BytesIO()
            out.save(buffer, format=image_format, quality=quality)
            return buffer.getvalue(), f"image/{image_format}"
    if channel == "rgb":
        with Image.open(path) as img:
            rgb = Image.merge("RGB", img.split()[:3]) if img.mode == "RGBA" else img.convert("RGB")
            buffer = io.BytesIO()
            rgb.save(buffer, format="PNG")
            return buffer.getvalue(), "image/png"
    if channel == "a":
        with Image.open(path) as img:
            alpha = img.split()[3] if img.mode == "RGBA" else Image.new("L", img.size, 255)
            alpha_img = Image.new("RGBA", img.size)
            alpha_img.putalpha(alpha)
            buffer = io.BytesIO()
            alpha_img.save(buffer, format="PNG")
            return buffer.getvalue(), "image/png"
    return None


def paste_mask_alpha(original: Path, mask_bytes: bytes, target: Path) -> None:
    """server.upload_mask's image_save_function: the original (text chunks kept) with the mask's
    alpha as its alpha, saved as PNG at compress_level 4. A mask of another size raises
    ValueError("images do not match"), which ComfyUI answers with its 500 page."""
    with Image.open(original) as original_pil:
        metadata = PngInfo()
        for key, value in getattr(original_pil, "text", {}).items():
            metadata.add_text(key, value)
        rgba = original_pil.convert("RGBA")
        with Image.open(io.BytesIO(mask_bytes)) as mask_pil:
            rgba.putalpha(mask_pil.convert("RGBA").getchannel("A"))
        rgba.save(target, compress_level=4, pnginfo=metadata)

