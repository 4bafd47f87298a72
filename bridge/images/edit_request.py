"""The ``/v1/images/edits`` form, typed: text fields to JSON values, the image and mask files picked.

A multipart form carries every value as text (the ``openai`` client sends ``n=2``, ``stream=true``,
``seed=5`` for ``extra_body={"seed": 5}``), so numbers and booleans are converted here and the result
goes through the same :func:`~.request.parse` as a generation's JSON body: one set of rules for both
routes. The image is ``image`` (one file) or ``image[]`` (several: the first is used, the built-in
templates take one); ``mask`` is optional.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..errors import ApiError

INT_FIELDS = frozenset({"n", "seed", "steps", "partial_images", "output_compression"})
FLOAT_FIELDS = frozenset({"cfg", "strength"})
BOOL_FIELDS = frozenset({"stream"})
IMAGE_FIELDS = ("image", "image[]")
MASK_FIELD = "mask"
_INT = re.compile(r"^[+-]?[0-9]+$")
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


@dataclass(frozen=True, slots=True)
class EditForm:
    body: dict[str, Any]  # typed fields, ready for request.parse
    image: bytes
    mask: bytes | None


def _typed(name: str, text: str) -> Any:
    value = text.strip()
    if value == "" and name != "prompt" and name != "negative_prompt":
        return None  # `-F size=` means "not given"
    if name in INT_FIELDS:
        if not _INT.match(value):
            raise ApiError(errors.INVALID_PARAMETER, f"{name} must be an integer, got {text!r}", param=name)
        return int(value)
    if name in FLOAT_FIELDS:
        try:
            number = float(value)
        except ValueError:
            raise ApiError(errors.INVALID_PARAMETER, f"{name} must be a number, got {text!r}", param=name) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ApiError(errors.INVALID_PARAMETER, f"{name} must be a finite number", param=name)
        return number
    if name in BOOL_FIELDS:
        if value.lower() not in _BOOLS:
            raise ApiError(errors.INVALID_PARAMETER, f"{name} must be true or false, got {text!r}", param=name)
        return _BOOLS[value.lower()]
    return text


def form_body(fields: dict[str, list[str]], files: dict[str, list[Any]]) -> EditForm:
    """Type the fields and pick the files; 422 for a missing image, a text ``image`` or a repeated field.

    ``files`` maps a field name to its uploads (objects with ``data``), as :mod:`..http.multipart` reads them.
    """
    body: dict[str, Any] = {}
    for name, values in fields.items():
        if name in IMAGE_FIELDS or name == MASK_FIELD:
            code = errors.INVALID_MASK if name == MASK_FIELD else errors.INVALID_IMAGE
            param = name.removesuffix("[]")
            raise ApiError(code, f"{param} must be sent as a file, not as a text field", param=param)
        if name == "extra_body":  # what the openai client merges into the form as fields
            raise ApiError(errors.UNKNOWN_FIELD, "a form has no extra_body: send hal0's extras as fields (seed=5)",
                           param=name)  # fmt: skip
        if len(values) > 1:
            raise ApiError(errors.INVALID_PARAMETER, f"field {name} is given {len(values)} times", param=name)
        body[name] = _typed(name, values[0])
    for name in files:
        if name not in IMAGE_FIELDS and name != MASK_FIELD:
            raise ApiError(errors.UNKNOWN_FIELD, f"unknown file field {name!r} (send image and mask)", param=name)
    uploads = [upload for name in IMAGE_FIELDS for upload in files.get(name, [])]
    if not uploads:
        raise ApiError(errors.INVALID_IMAGE, "image is required: the picture to edit, as a file", param="image")
    masks = files.get(MASK_FIELD, [])
    if len(masks) > 1:
        raise ApiError(errors.INVALID_MASK, "send one mask", param="mask")
    return EditForm(body, uploads[0].data, masks[0].data if masks else None)
