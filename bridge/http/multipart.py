"""Reading a ``multipart/form-data`` body (what the ``openai`` client sends to ``/v1/images/edits``).

The app's ``client_max_size`` bounds ``request.read()``, not a multipart stream, so this reader
bounds every part itself while it streams: a file over ``max_file_bytes`` is 413
``image.upload_too_large`` as soon as it is seen to be, a text field over ``MAX_FIELD_BYTES`` or more
than ``MAX_PARTS`` parts is 413 ``request.body_too_large``. What the fields mean is for the route's
concern to decide (:mod:`hal0_bridge.images.edit_request`); this module only returns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

from .. import errors
from ..errors import ApiError
from .server import MULTIPART

MAX_FIELD_BYTES = 256 * 1024  # a prompt is at most 20 000 characters (images.request.MAX_PROMPT_CHARS)
MAX_PARTS = 64
CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class FormFile:
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class Form:
    """Every part by field name, in the order sent (a name may repeat: ``image[]``)."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[FormFile]] = field(default_factory=dict)


def _invalid(message: str) -> ApiError:
    return ApiError(errors.INVALID_FORM, f"request body is not a valid multipart form: {message}")


async def _read_part(part: BodyPartReader, limit: int, too_large: ApiError) -> bytes:
    data = bytearray()
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            # decoded as sent (Content-Transfer-Encoding is deprecated for forms and never sent by clients)
            return bytes(data)
        data += chunk
        if len(data) > limit:
            raise too_large


async def read_form(request: web.Request, *, max_file_bytes: int) -> Form:
    """The form, or 415 (not multipart), 400 ``request.invalid_form`` (broken), 413 (too big)."""
    if request.content_type != MULTIPART:
        raise ApiError(
            errors.UNSUPPORTED_MEDIA_TYPE,
            f"{request.path} takes {MULTIPART} (got {request.content_type or 'no Content-Type'})",
            details={"accepted": [MULTIPART]},
        )
    form = Form()
    parts = 0
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                return form
            if not isinstance(part, BodyPartReader):  # a nested multipart/mixed: not a form
                raise _invalid("nested multipart parts are not accepted")
            parts += 1
            if parts > MAX_PARTS:
                raise ApiError(errors.BODY_TOO_LARGE, f"a form has at most {MAX_PARTS} parts")
            name = part.name
            if not name:
                raise _invalid("a part has no name in its Content-Disposition")
            if part.filename is not None:
                too_large = ApiError(
                    errors.UPLOAD_TOO_LARGE,
                    f"{name} is larger than {max_file_bytes} bytes (image.max_upload_bytes)",
                    param=name.removesuffix("[]"),
                    details={"max_bytes": max_file_bytes},
                )
                data = await _read_part(part, max_file_bytes, too_large)
                upload = FormFile(part.filename, part.headers.get("Content-Type", ""), data)
                form.files.setdefault(name, []).append(upload)
            else:
                too_large = ApiError(
                    errors.BODY_TOO_LARGE,
                    f"form field {name} is larger than {MAX_FIELD_BYTES} bytes",
                    param=name,
                    details={"max_bytes": MAX_FIELD_BYTES},
                )
                raw = await _read_part(part, MAX_FIELD_BYTES, too_large)
                try:
                    text = raw.decode(part.get_charset(default="utf-8"))
                except (UnicodeDecodeError, LookupError):
                    raise _invalid(f"field {name} is not text in its charset") from None
                form.fields.setdefault(name, []).append(text)
    except ApiError:
        raise
    except (ValueError, AssertionError, RuntimeError, KeyError) as err:
        # aiohttp's parser raises these for a missing boundary, a bad header block, a cut-off body
        raise _invalid(str(err) or type(err).__name__) from None
