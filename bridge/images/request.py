"""Parse and validate an OpenAI ``POST /v1/images/generations`` body, before anything touches the GPU.

Accepts OpenAI's own fields (extra ones such as ``quality`` or ``user`` are accepted and ignored) and
hal0's extras ``seed``, ``steps``, ``cfg``, ``negative_prompt`` both at top level — where the official
``openai`` client puts ``extra_body`` keys — and inside an ``extra_body`` object, for clients that send
it literally. Any other field is refused, so a typo (``stpes``) is not silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import errors
from ..config import SIZE_RE, ImageConfig
from ..errors import ApiError
from .catalogue import Catalogue, ModelSpec

HAL0_EXTRAS = ("seed", "steps", "cfg", "negative_prompt")
OPENAI_IGNORED = frozenset(
    {
        "quality", "style", "user", "background", "moderation", "output_compression",
        "output_format", "partial_images", "stream",
    }
)
KNOWN = frozenset({"model", "prompt", "n", "size", "response_format", "extra_body", *HAL0_EXTRAS}) | OPENAI_IGNORED
RESPONSE_FORMATS = ("url", "b64_json")
MAX_PROMPT_CHARS = 20_000
MAX_SEED = 2**64 - 1  # KSampler's seed range (object_info: max 0xffffffffffffffff)
MAX_STEPS = 200
MAX_CFG = 100.0
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


def _extras(body: dict[str, Any]) -> dict[str, Any]:
    extra = body.get("extra_body")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise _invalid("extra_body", "extra_body must be an object")
    unknown = sorted(set(extra) - set(HAL0_EXTRAS))
    if unknown:
        raise ApiError(
            errors.UNKNOWN_FIELD,
            f"unknown field extra_body.{unknown[0]}; accepted: {', '.join(HAL0_EXTRAS)}",
            param=f"extra_body.{unknown[0]}",
        )
    # null means "not given", in either place; given in both places is refused, even with equal
    # values, so the rule is one an OpenAPI schema can state (and a client never wonders which won)
    merged = {k: body[k] for k in HAL0_EXTRAS if body.get(k) is not None}
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
        width, height = image.default_size.split("x")
        return int(width), int(height)
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


def parse(body: Any, catalogue: Catalogue, image: ImageConfig) -> ImageRequest:
    """Validate in a fixed order so the first problem a client sees is the most basic one."""
    if not isinstance(body, dict):
        raise ApiError(errors.BODY_NOT_OBJECT, "request body must be a JSON object")
    unknown = sorted(set(body) - KNOWN)
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

    width, height = parse_size(body.get("size"), spec, image)

    response_format = body.get("response_format")
    if response_format is None:
        response_format = "url"
    if response_format not in RESPONSE_FORMATS:
        raise _invalid("response_format", "response_format must be \"url\" or \"b64_json\"")

    extras = _extras(body)
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
    )
