"""Parse and validate an OpenAI image request body, before anything touches the GPU.

Accepts OpenAI's own fields (extra ones such as ``quality`` or ``user`` are accepted and ignored) and
hal0's extras ``seed``, ``steps``, ``cfg``, ``negative_prompt`` (and ``strength`` on edits) both at top
level — where the official ``openai`` client puts ``extra_body`` keys — and inside an ``extra_body``
object, for clients that send it literally. Any other field is refused, so a typo (``stpes``) is not
silently ignored. ``POST /v1/images/generations`` bodies come here as JSON; ``/v1/images/edits`` forms
are typed by :mod:`.edit_request` first and then checked by the same :func:`parse`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .. import errors
from ..config import SIZE_RE, ImageConfig
from ..errors import ApiError
from .catalogue import Catalogue, ModelSpec
from .formats import DEFAULT_COMPRESSION, DEFAULT_FORMAT, FORMATS
from .inputs import EditInput

HAL0_EXTRAS = ("seed", "steps", "cfg", "negative_prompt")
EDIT_EXTRAS = (*HAL0_EXTRAS, "strength")
OPENAI_IGNORED = frozenset(
    {"quality", "style", "user", "background", "moderation", "safety_identifier"}
)
# OpenAI fields of edits we accept and ignore (input_fidelity only tunes OpenAI's own models)
EDIT_IGNORED = frozenset({"quality", "user", "background", "input_fidelity", "safety_identifier"})
OUTPUT_FIELDS = ("output_format", "output_compression", "stream", "partial_images")
KNOWN = (
    frozenset({"model", "prompt", "n", "size", "response_format", "extra_body", *OUTPUT_FIELDS, *HAL0_EXTRAS})
    | OPENAI_IGNORED
)
EDIT_KNOWN = (
    frozenset({"model", "prompt", "n", "size", "response_format", "extra_body", *OUTPUT_FIELDS, *EDIT_EXTRAS})
    | EDIT_IGNORED
)
RESPONSE_FORMATS = ("url", "b64_json")
MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**64 - 1  # KSampler's seed range (object_info: max 0xffffffffffffffff)
MAX_STEPS = 200
MAX_CFG = 100.0
MAX_PARTIAL_IMAGES = 3  # OpenAI's range for partial_images
DEFAULT_STRENGTH = 0.75  # KSampler denoise of an edit: how much of the source is repainted
SIZE_STEP = 8  # latent images are 1/8 of the pixel size
MIN_SIDE = 64


@dataclass(frozen=True, slots=True)
class ImageRequest:
    model: ModelSpec
    prompt: str
    negative_prompt: str
    n: int
    width: int
    height: int
    response_format: str
    seed: int | None
    steps: int | None
    cfg: float | None
    output_format: str = DEFAULT_FORMAT
    output_compression: int = DEFAULT_COMPRESSION
    stream: bool = False
    partial_images: int = 0
    # an edit's source image (and mask) and KSampler denoise; None for a generation
    edit: EditInput | None = None
    strength: float = DEFAULT_STRENGTH


def _as_int(value: Any) -> int | None:
    """An integer, or None. ``2.0`` counts (JSON Schema's "integer" is any number without a
    fraction, and clients that compute a value may send it so); ``true`` and ``2.5`` do not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _invalid(param: str, message: str) -> ApiError:
    return ApiError(errors.INVALID_PARAMETER, message, param=param)


def _extras(body: dict[str, Any], accepted: tuple[str, ...]) -> dict[str, Any]:
    extra = body.get("extra_body")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise _invalid("extra_body", "extra_body must be an object")
    unknown = sorted(set(extra) - set(accepted))
    if unknown:
        raise ApiError(
            errors.UNKNOWN_FIELD,
            f"unknown field extra_body.{unknown[0]}; accepted: {', '.join(accepted)}",
            param=f"extra_body.{unknown[0]}",
        )
    # null means "not given", in either place; given in both places is refused, even with equal
    # values, so the rule is one an OpenAPI schema can state (and a client never wonders which won)
    merged = {k: body[k] for k in accepted if body.get(k) is not None}
    for key, value in extra.items():
        if value is None:
            continue
        if key in merged:
            raise _invalid(key, f"{key} is given twice (at top level and in extra_body); give it once")
        merged[key] = value
    return merged


def parse_size(value: Any, spec: ModelSpec, image: ImageConfig) -> tuple[int, int]:
    """``WxH`` (multiples of 8, each side 64..max_side) or ``auto``/absent for the model's size."""
    if value is None or value == "auto":
        if spec.size:
            return spec.size
        default_w, default_h = image.default_size.split("x")
        return int(default_w), int(default_h)
    if not isinstance(value, str):
        raise ApiError(errors.INVALID_SIZE, "size must be a string like \"1024x1024\" or \"auto\"", param="size")
    match = SIZE_RE.match(value.strip(" \t").lower())  # the OpenAPI pattern says the same
    if not match:
        raise ApiError(errors.INVALID_SIZE, f"size {value!r} is not WIDTHxHEIGHT (e.g. 1024x1024) or auto", param="size")
    width, height = int(match.group(1)), int(match.group(2))
    for side in (width, height):
        if not MIN_SIDE <= side <= image.max_side:
            raise ApiError(
                errors.INVALID_SIZE,
                f"size {value}: each side must be between {MIN_SIDE} and {image.max_side} pixels",
                param="size",
                details={"min": MIN_SIDE, "max": image.max_side},
            )
        if side % SIZE_STEP:
            raise ApiError(
                errors.INVALID_SIZE, f"size {value}: each side must be a multiple of {SIZE_STEP}", param="size"
            )
    return width, height


def _int_in(extras: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = extras.get(key)
    if value is None:
        return None
    number = _as_int(value)
    if number is None or not low <= number <= high:
        raise _invalid(key, f"{key} must be an integer between {low} and {high}")
    return number


def _cfg(extras: dict[str, Any]) -> float | None:
    value = extras.get("cfg")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_CFG:
        raise _invalid("cfg", f"cfg must be a number between 0 and {MAX_CFG:g}")
    return float(value)


def _outputs(body: dict[str, Any]) -> tuple[str, int, bool, int]:
    """``output_format``, ``output_compression``, ``stream``, ``partial_images`` (null = the default)."""
    fmt = body.get("output_format")
    fmt = DEFAULT_FORMAT if fmt is None else fmt
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise _invalid("output_format", f"output_format must be one of {', '.join(FORMATS)}")
    compression = _as_int(DEFAULT_COMPRESSION if body.get("output_compression") is None else body["output_compression"])
    if compression is None or not 0 <= compression <= 100:
        raise _invalid("output_compression", "output_compression must be an integer between 0 and 100")
    stream = body.get("stream")
    stream = False if stream is None else stream
    if not isinstance(stream, bool):
        raise _invalid("stream", "stream must be true or false")
    partial = _as_int(0 if body.get("partial_images") is None else body["partial_images"])
    if partial is None or not 0 <= partial <= MAX_PARTIAL_IMAGES:
        raise _invalid("partial_images", f"partial_images must be an integer between 0 and {MAX_PARTIAL_IMAGES}")
    return fmt, compression, stream, partial


def _strength(extras: dict[str, Any]) -> float:
    value = extras.get("strength")
    if value is None:
        return DEFAULT_STRENGTH
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise _invalid("strength", "strength must be a number above 0 and at most 1 (1 = repaint fully)")
    return float(value)


def parse(body: Any, catalogue: Catalogue, image: ImageConfig, *, edit: bool = False) -> ImageRequest:
    """Validate in a fixed order so the first problem a client sees is the most basic one.

    With ``edit`` the edit's fields apply (``strength`` is accepted) and ``size`` auto is left at 0x0
    until :func:`with_source` gives the request its checked source image (whose size it then takes).
    """
    if not isinstance(body, dict):
        raise ApiError(errors.BODY_NOT_OBJECT, "request body must be a JSON object")
    known = EDIT_KNOWN if edit else KNOWN
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(errors.UNKNOWN_FIELD, f"unknown field {unknown[0]!r}", param=unknown[0])

    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise _invalid("prompt", "prompt must be a string")
    if not prompt or not prompt.strip():
        raise ApiError(errors.PROMPT_REQUIRED, "prompt is required and must not be empty", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid("prompt", f"prompt is longer than {MAX_PROMPT_CHARS} characters")

    model_name = body.get("model", image.default_model)
    if model_name is None:
        model_name = image.default_model
    if not isinstance(model_name, str):
        raise _invalid("model", "model must be a string")
    spec = catalogue.resolve(model_name)

    n = _as_int(1 if body.get("n") is None else body["n"])
    if n is None or not 1 <= n <= image.max_n:
        raise ApiError(errors.INVALID_N, f"n must be an integer between 1 and {image.max_n}", param="n")

    size = body.get("size")
    if edit and (size is None or size == "auto"):
        width, height = 0, 0  # the source's size, once it is known (with_source)
    else:
        width, height = parse_size(size, spec, image)

    response_format = body.get("response_format")
    if response_format is None:
        response_format = "url"
    if response_format not in RESPONSE_FORMATS:
        raise _invalid("response_format", "response_format must be \"url\" or \"b64_json\"")

    extras = _extras(body, EDIT_EXTRAS if edit else HAL0_EXTRAS)
    output_format, output_compression, stream, partial_images = _outputs(body)
    negative = extras.get("negative_prompt")
    if negative is None:  # not `or ""`: {} or 0 must be refused, not read as "no negative prompt"
        negative = ""
    if not isinstance(negative, str) or len(negative) > MAX_PROMPT_CHARS:
        raise _invalid("negative_prompt", "negative_prompt must be a string")

    return ImageRequest(
        model=spec,
        prompt=prompt,
        negative_prompt=negative,
        n=n,
        width=width,
        height=height,
        response_format=response_format,
        seed=_int_in(extras, "seed", 0, MAX_SEED),
        steps=_int_in(extras, "steps", 1, MAX_STEPS),
        cfg=_cfg(extras),
        output_format=output_format,
        output_compression=output_compression,
        stream=stream,
        partial_images=partial_images,
        strength=_strength(extras) if edit else DEFAULT_STRENGTH,
    )


def with_source(req: ImageRequest, source: EditInput) -> ImageRequest:
    """The edit request with its checked source; ``size`` auto becomes the source's size, cut to whole
    latent pixels as ComfyUI's VAEEncode does (``vae_encode_crop_pixels``)."""
    width, height = req.width, req.height
    if not width:
        width = source.image.width // SIZE_STEP * SIZE_STEP
        height = source.image.height // SIZE_STEP * SIZE_STEP
    return replace(req, edit=source, width=width, height=height)
