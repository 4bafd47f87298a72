"""Reading a ``multipart/form-data`` body (what the ``openai`` client sends to ``/v1/images/edits``).

The app's ``client_max_size`` bounds ``request.read()``, not a streamed body, so this reader bounds
the body itself while it arrives: more than ``max_body_bytes`` in all is 413 ``image.upload_too_large``
as soon as it is seen to be. The body is split while it arrives (:class:`FormParser`, RFC 7578 /
RFC 2046 §5.1.1: ``--boundary`` delimiters, each part a header block, a blank line, its content), each
part's content written into its own buffer chunk by chunk: one copy of a 2.4 MB picture, made while
the network is still delivering it, and nothing left to split, join or slice once the last byte is in
(splitting the whole body after it arrived cost ~4 ms per edit on the route's 15 ms budget, bench).
Content-Disposition is parsed by aiohttp's own parser (quoting, RFC 2231 ``filename*``). Per part: a
file over ``max_file_bytes`` is 413 ``image.upload_too_large``, a text field over ``MAX_FIELD_BYTES`` or
more than ``MAX_PARTS`` parts 413 ``request.body_too_large``; a broken or cut-off body is 400
``request.invalid_form``. What the fields mean is for the route's concern to decide
(:mod:`hal0_bridge.images.edit_request`); this module only returns them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from enum import Enum, auto

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


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(CRLF):
        name, sep, value = line.partition(b":")
        if not sep:
            raise _invalid("a part has a malformed header line")
        # field names and file names are UTF-8 in practice (RFC 7578 §5.1); undecodable bytes are kept
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("utf-8", "surrogateescape")
    return headers


def _disposition(headers: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """aiohttp's parser, which raises IndexError on an empty value (``name=``): that is no name either."""
    try:
        return parse_content_disposition(headers.get("content-disposition"))
    except IndexError:
        return None, {}


class _State(Enum):
    OPENING = auto()  # the preamble, up to the first delimiter
    BOUNDARY = auto()  # the rest of a delimiter line: "--" (the close) or padding and CRLF
    HEADERS = auto()  # a part's header block, up to the blank line
    CONTENT = auto()  # a part's content, up to CRLF and the next delimiter
    DONE = auto()  # after the closing delimiter: the epilogue, ignored


class FormParser:
    """Splits a form body fed in pieces as they arrive; :meth:`close` at its end returns the :class:`Form`.

    Splitting in pieces finds exactly what splitting the whole body would (:func:`parse_form` is this
    parser fed once): a delimiter split across two pieces is found by searching the last
    ``len(CRLF--boundary) - 1`` bytes of content, held back, together with the next piece. Errors are
    raised in the body's order, each as soon as the bytes that decide it are in.
    """

    def __init__(self, boundary: bytes, *, max_file_bytes: int) -> None:
        self._delimiter = b"--" + boundary
        self._needle = CRLF + self._delimiter  # what ends a part's content
        self._max_file_bytes = max_file_bytes
        self._state = _State.OPENING
        self._pending = bytearray()  # bytes of a small state (preamble, delimiter line, headers)
        self._scanned = 0  # how much of _pending is already searched without a match
        self._parts = 0
        self._headers: dict[str, str] = {}
        self._content = io.BytesIO()  # getvalue() hands its buffer over without a copy
        self._held = b""  # the last bytes of content, which may begin a delimiter
        self.form = Form()

    def feed(self, data: bytes) -> None:
        while data and self._state is not _State.DONE:
            data = self._content_piece(data) if self._state is _State.CONTENT else self._small_piece(data)

    def close(self) -> Form:
        """The form; 400 ``request.invalid_form`` when the body ended before its closing delimiter."""
        if self._state not in (_State.CONTENT, _State.DONE):
            self._advance(end=True)  # raises what the last bytes lack, unless they were the close
        if self._state is _State.CONTENT:
            raise _invalid("the body is cut off: a part has no closing boundary")
        return self.form

    # --- the small states: buffered until the bytes that decide them are in

    def _small_piece(self, data: bytes) -> bytes:
        self._pending += data
        return self._advance(end=False)

    def _advance(self, *, end: bool) -> bytes:
        """Move through small states as far as the buffered bytes allow; returns what comes after."""
        while True:
            rest = self._step(end)
            if rest is None:
                return b""  # wait for more
            self._pending.clear()
            self._scanned = 0
            if self._state in (_State.CONTENT, _State.DONE):
                return rest
            self._pending += rest

    def _step(self, end: bool) -> bytes | None:
        buf = self._pending
        if self._state is _State.OPENING:
            start = buf.find(self._delimiter, max(0, self._scanned - len(self._delimiter) + 1))
            if start == -1:
                if end:
                    raise _invalid("no opening boundary")
                self._scanned = len(buf)
                return None
            if start and buf[start - 2 : start] != CRLF:
                raise _invalid("no opening boundary")
            self._state = _State.BOUNDARY
            return bytes(buf[start + len(self._delimiter) :])
        if self._state is _State.BOUNDARY:
            if len(buf) < 2 and not end:
                return None
            if buf.startswith(b"--"):
                self._state = _State.DONE  # the closing delimiter (an epilogue after it is ignored)
                return b""
            line_end = buf.find(CRLF, max(0, self._scanned - 1))
            if line_end == -1:
                if end:
                    raise _invalid("the body ends inside a boundary line")
                self._scanned = len(buf)
                return None
            if buf[:line_end].strip(b" \t"):
                raise _invalid("junk after a boundary")
            self._parts += 1
            if self._parts > MAX_PARTS:
                raise ApiError(errors.BODY_TOO_LARGE, f"a form has at most {MAX_PARTS} parts")
            self._state = _State.HEADERS
            return bytes(buf[line_end + 2 :])
        # HEADERS
        header_end = buf.find(CRLF + CRLF, 0, MAX_HEADER_BYTES)
        if header_end == -1:
            if end or len(buf) >= MAX_HEADER_BYTES:
                raise _invalid("a part's headers do not end (cut off, or longer than 8 KiB)")
            return None
        self._headers = _headers(bytes(buf[:header_end])) if header_end > 0 else {}
        self._state = _State.CONTENT
        return bytes(buf[header_end + 4 :])

    # --- a part's content: written through, except the bytes that may begin its delimiter

    def _content_piece(self, data: bytes) -> bytes:
        needle, held = self._needle, self._held
        keep = len(needle) - 1
        if held:  # a delimiter begun in the held bytes ends in this piece's first ones
            at = (held + data[:keep]).find(needle)
            if at != -1:
                self._content.write(held[:at])
                self._end_part()
                return data[at + len(needle) - len(held) :]
        at = data.find(needle)
        if at != -1:
            self._content.write(held)
            self._content.write(memoryview(data)[:at])
            self._end_part()
            return data[at + len(needle) :]
        if len(data) >= keep:
            self._content.write(held)
            self._content.write(memoryview(data)[: len(data) - keep])
            self._held = data[len(data) - keep :]
        else:
            joined = held + data
            cut = max(0, len(joined) - keep)
            self._content.write(joined[:cut])
            self._held = joined[cut:]
        return b""

    def _end_part(self) -> None:
        content = self._content.getvalue()
        self._content, self._held = io.BytesIO(), b""
        self._state = _State.BOUNDARY
        headers = self._headers
        disposition, params = _disposition(headers)
        name = params.get("name")
        if disposition != "form-data" or not name:
            raise _invalid("a part has no name in its Content-Disposition")
        filename = content_disposition_filename(params, "filename")
        if filename is not None:
            if len(content) > self._max_file_bytes:
                raise ApiError(
                    errors.UPLOAD_TOO_LARGE,
                    f"{name} is larger than {self._max_file_bytes} bytes (image.max_upload_bytes)",
                    param=name.removesuffix("[]"),
                    details={"max_bytes": self._max_file_bytes},
                )
            self.form.files.setdefault(name, []).append(FormFile(filename, headers.get("content-type", ""), content))
            return
        if len(content) > MAX_FIELD_BYTES:
            raise ApiError(
                errors.BODY_TOO_LARGE,
                f"form field {name} is larger than {MAX_FIELD_BYTES} bytes",
                param=name,
                details={"max_bytes": MAX_FIELD_BYTES},
            )
        charset = parse_mimetype(headers.get("content-type", "")).parameters.get("charset", "utf-8")
        try:
            text = content.decode(charset)
        except (UnicodeDecodeError, LookupError):
            raise _invalid(f"field {name} is not text in its charset") from None
        self.form.fields.setdefault(name, []).append(text)


def parse_form(body: bytes, boundary: bytes, *, max_file_bytes: int) -> Form:
    """Split a whole form body; see the module docstring for the rules and the errors."""
    parser = FormParser(boundary, max_file_bytes=max_file_bytes)
    parser.feed(body)
    return parser.close()


async def read_form(request: web.Request, *, max_file_bytes: int) -> Form:
    """The form, or 415 (not multipart), 400 ``request.invalid_form`` (broken), 413 (too big).

    The whole body may hold an image and a mask of ``max_file_bytes`` each, plus the text fields. It
    is split while it arrives; a broken part's error still waits for the body's end, so a body over
    the bound is 413 first, whatever it holds (as when the body was read whole, then split).
    """
    boundary = _boundary(request)
    limit = 2 * max_file_bytes + MAX_PARTS * 1024 + MAX_FIELD_BYTES
    parser = FormParser(boundary, max_file_bytes=max_file_bytes)
    broken: ApiError | None = None
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
            if broken is None:
                try:
                    parser.feed(chunk)
                except ApiError as err:
                    broken = err
    except (aiohttp.ClientError, OSError) as err:  # the client went away mid-body
        raise _invalid(f"the body was cut off ({type(err).__name__})") from None
    if broken is not None:
        raise broken
    return parser.close()
