"""Reading a ``multipart/form-data`` body (what the ``openai`` client sends to ``/v1/images/edits``).

The app's ``client_max_size`` bounds ``request.read()``, not a streamed body, so this reader bounds
the body itself while it arrives: more than ``max_body_bytes`` in all is 413 ``image.upload_too_large``
as soon as it is seen to be. The body is then split with ``bytes.find`` (RFC 7578 / RFC 2046 §5.1.1:
``--boundary`` delimiters, each part a header block, a blank line, its content) — about twice as fast
as aiohttp's streaming part reader for a 2.4 MB picture, which matters on a route whose whole
overhead budget is 15 ms. Content-Disposition is parsed by aiohttp's own parser (quoting, RFC 2231
``filename*``). Per part: a file over ``max_file_bytes`` is 413 ``image.upload_too_large``, a text field
over ``MAX_FIELD_BYTES`` or more than ``MAX_PARTS`` parts 413 ``request.body_too_large``; a broken or
cut-off body is 400 ``request.invalid_form``. What the fields mean is for the route's concern to decide
(:mod:`hal0_bridge.images.edit_request`); this module only returns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.helpers import parse_mimetype
from aiohttp.multipart import content_disposition_filename, parse_content_disposition

from .. import errors
from ..errors import ApiError
from .server import MULTIPART

MAX_FIELD_BYTES = 256 * 1024  # a prompt is at most 20 000 characters (images.request.MAX_PROMPT_CHARS)
MAX_PARTS = 64
MAX_HEADER_BYTES = 8 * 1024  # one part's header block
CRLF = b"\r\n"


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


def _boundary(request: web.Request) -> bytes:
    if request.content_type != MULTIPART:
        raise ApiError(
            errors.UNSUPPORTED_MEDIA_TYPE,
            f"{request.path} takes {MULTIPART} (got {request.content_type or 'no Content-Type'})",
            details={"accepted": [MULTIPART]},
        )
    boundary = parse_mimetype(request.headers["Content-Type"]).parameters.get("boundary", "")
    if not boundary or len(boundary) > 70:  # RFC 2046: 1 to 70 characters
        raise _invalid("Content-Type has no usable boundary")
    return boundary.encode("latin-1", "replace")


async def _body(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise ApiError(
                    errors.UPLOAD_TOO_LARGE,
                    f"request body is larger than {limit} bytes (image.max_upload_bytes per file)",
                    details={"max_bytes": limit},
                )
            chunks.append(chunk)
    except (aiohttp.ClientError, OSError) as err:  # the client went away mid-body
        raise _invalid(f"the body was cut off ({type(err).__name__})") from None
    return b"".join(chunks)


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            raise _invalid("a part has a malformed header line")
        # field names and file names are UTF-8 in practice (RFC 7578 §5.1); undecodable bytes are kept
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "surrogateescape")
    return headers


def parse_form(body: bytes, boundary: bytes, *, max_file_bytes: int) -> Form:
    """Split a whole form body; see the module docstring for the rules and the errors."""
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    if start == -1 or (start and body[start - 2 : start] != CRLF):
        raise _invalid("no opening boundary")
    view = memoryview(body)
    form = Form()
    parts = 0
    pos = start + len(delimiter)
    while True:
        if body.startswith(b"--", pos):
            return form  # the closing delimiter (an epilogue after it is ignored)
        line_end = body.find(CRLF, pos)
        if line_end == -1 or body[pos:line_end].strip(b" \t"):
            raise _invalid("the body ends inside a boundary line" if line_end == -1 else "junk after a boundary")
        pos = line_end + 2
        parts += 1
        if parts > MAX_PARTS:
            raise ApiError(errors.BODY_TOO_LARGE, f"a form has at most {MAX_PARTS} parts")
        header_end = body.find(CRLF + CRLF, pos, pos + MAX_HEADER_BYTES)
        if header_end == -1:
            raise _invalid("a part's headers do not end (cut off, or longer than 8 KiB)")
        headers = _headers(body[pos:header_end]) if header_end > pos else {}
        content_start = header_end + 4
        content_end = body.find(CRLF + delimiter, content_start)
        if content_end == -1:
            raise _invalid("the body is cut off: a part has no closing boundary")
        pos = content_end + 2 + len(delimiter)
        disposition, params = parse_content_disposition(headers.get("content-disposition"))
        name = params.get("name")
        if disposition != "form-data" or not name:
            raise _invalid("a part has no name in its Content-Disposition")
        filename = content_disposition_filename(params, "filename")
        size = content_end - content_start
        if filename is not None:
            if size > max_file_bytes:
                raise ApiError(
                    errors.UPLOAD_TOO_LARGE,
                    f"{name} is larger than {max_file_bytes} bytes (image.max_upload_bytes)",
                    param=name.removesuffix("[]"),
                    details={"max_bytes": max_file_bytes},
                )
            upload = FormFile(filename, headers.get("content-type", ""), bytes(view[content_start:content_end]))
            form.files.setdefault(name, []).append(upload)
            continue
        if size > MAX_FIELD_BYTES:
            raise ApiError(
                errors.BODY_TOO_LARGE,
                f"form field {name} is larger than {MAX_FIELD_BYTES} bytes",
                param=name,
                details={"max_bytes": MAX_FIELD_BYTES},
            )
        charset = parse_mimetype(headers.get("content-type", "")).parameters.get("charset", "utf-8")
        try:
            text = bytes(view[content_start:content_end]).decode(charset)
        except (UnicodeDecodeError, LookupError):
            raise _invalid(f"field {name} is not text in its charset") from None
        form.fields.setdefault(name, []).append(text)


async def read_form(request: web.Request, *, max_file_bytes: int) -> Form:
    """The form, or 415 (not multipart), 400 ``request.invalid_form`` (broken), 413 (too big).

    The whole body may hold an image and a mask of ``max_file_bytes`` each, plus the text fields.
    """
    boundary = _boundary(request)
    body = await _body(request, 2 * max_file_bytes + MAX_PARTS * 1024 + MAX_FIELD_BYTES)
    return parse_form(body, boundary, max_file_bytes=max_file_bytes)
