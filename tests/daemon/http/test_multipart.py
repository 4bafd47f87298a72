"""The multipart splitter: what real clients send, RFC 2046's corners, and every broken body refused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hal0_bridge.errors import ApiError
from hal0_bridge.http.multipart import MAX_PARTS, FormParser, parse_form, read_form

B = b"xyz"


def body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    return preamble + b"".join(b"--xyz\r\n" + p + b"\r\n" for p in parts) + b"--xyz--" + epilogue


def field(name: str, value: bytes, extra: bytes = b"") -> bytes:
    return b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n' + extra + b"\r\n" + value


def upload(name: str, filename: str, data: bytes) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
    return disposition + b"Content-Type: image/png\r\n\r\n" + data


def refused(data: bytes, limit: int = 1000) -> ApiError:
    with pytest.raises(ApiError) as info:
        parse_form(data, B, max_file_bytes=limit)
    return info.value


def test_fields_and_files_in_order() -> None:
    form = parse_form(body(field("prompt", b"a cat"), upload("image[]", "a.png", b"AA"), upload("image[]", "b.png", b"BB")),
                      B, max_file_bytes=10)  # fmt: skip
    assert form.fields == {"prompt": ["a cat"]}
    assert [(f.filename, f.content_type, f.data) for f in form.files["image[]"]] == [
        ("a.png", "image/png", b"AA"), ("b.png", "image/png", b"BB"),
    ]  # fmt: skip


def test_content_with_crlf_and_dashes_survives() -> None:
    # a delimiter is CRLF "--xyz" (RFC 2046 5.1.1); the boundary elsewhere in a line is content
    data = b"\r\n--xy\r\na--xyz\r\n-- xyz\r\n\r\n"
    form = parse_form(body(upload("image", "a.png", data)), B, max_file_bytes=1000)
    assert form.files["image"][0].data == data


def test_preamble_epilogue_empty_value_and_utf8_names() -> None:
    form = parse_form(
        body(field("size", b""), upload("image", "häus.png", b"x"), preamble=b"ignored\r\n", epilogue=b"\r\nbye"),
        B, max_file_bytes=10,
    )  # fmt: skip
    assert form.fields == {"size": [""]} and form.files["image"][0].filename == "häus.png"


def test_rfc2231_filename_and_a_field_charset() -> None:
    star = b"Content-Disposition: form-data; name=\"image\"; filename*=UTF-8''%C3%A4.png\r\n\r\nx"
    latin = field("prompt", "é".encode("latin-1"), b"Content-Type: text/plain; charset=latin-1\r\n")
    form = parse_form(body(star, latin), B, max_file_bytes=10)
    assert form.files["image"][0].filename == "ä.png" and form.fields["prompt"] == ["é"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"no boundary at all", "no opening boundary"),
        (b"--xyz\r\n" + field("a", b"1"), "no closing boundary"),  # cut off
        (b"--xyz\r\nContent-Disposition: form-data; name=\"a\"", "headers do not end"),
        (b"--xyz junk\r\n" + field("a", b"1") + b"\r\n--xyz--", "junk after a boundary"),
        (b"--xyz\r\n" + b"Content-Disposition: form-data\r\n\r\n1\r\n--xyz--", "no name"),
        (b"--xyz\r\n" + b"Content-Disposition: attachment; name=\"a\"\r\n\r\n1\r\n--xyz--", "no name"),
        (b"--xyz\r\nno colon here\r\n\r\n1\r\n--xyz--", "malformed header"),
        (b"--xyz\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n1\r\n--xyz--", "headers do not end"),
        (b"--xyz\r\n" + field("a", b"\xff\xfe"), "no closing boundary"),
        (body(field("a", b"\xff\xfe")), "not text"),
        (b"--xyz", "ends inside a boundary line"),
    ],
)
def test_broken_bodies_are_invalid_forms(data: bytes, why: str) -> None:
    err = refused(data)
    assert (err.status, err.code) == (400, "request.invalid_form") and why in err.message


def test_file_limit_is_per_file_and_inclusive() -> None:
    assert parse_form(body(upload("image", "a.png", b"x" * 100)), B, max_file_bytes=100).files["image"]
    err = refused(body(upload("mask", "m.png", b"x" * 101)), limit=100)
    assert (err.status, err.code, err.param, err.details) == (413, "image.upload_too_large", "mask", {"max_bytes": 100})


def test_too_many_parts_and_a_huge_field_are_413() -> None:
    assert refused(body(*(field(f"f{i}", b"1") for i in range(MAX_PARTS + 1)))).code == "request.body_too_large"
    assert refused(body(field("prompt", b"x" * (256 * 1024 + 1)))).param == "prompt"


# --- read_form over HTTP: media type, boundary, the whole-body bound --------------------------------


@pytest.fixture
async def echo(aiohttp_client: Any) -> TestClient:
    async def handler(request: web.Request) -> web.Response:
        try:
            form = await read_form(request, max_file_bytes=1000)
        except ApiError as err:
            return web.json_response(err.envelope(), status=err.status)
        return web.json_response({"fields": form.fields, "files": {k: [f.filename for f in v] for k, v in form.files.items()}})

    app = web.Application()
    app.router.add_post("/form", handler)
    return await aiohttp_client(app)


async def test_what_aiohttp_sends_is_read(echo: TestClient) -> None:
    data = aiohttp.FormData()
    data.add_field("prompt", "a cat")
    data.add_field("image", b"png", filename="a.png")
    resp = await echo.post("/form", data=data)
    assert await resp.json() == {"fields": {"prompt": ["a cat"]}, "files": {"image": ["a.png"]}}


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [("application/json", 415, "request.unsupported_media_type"),
     ("multipart/form-data", 400, "request.invalid_form"),
     ("multipart/form-data; boundary=" + "b" * 71, 400, "request.invalid_form")],
)  # fmt: skip
async def test_media_type_and_boundary(echo: TestClient, content_type: str, status: int, code: str) -> None:
    resp = await echo.post("/form", data=body(field("a", b"1")), headers={"Content-Type": content_type})
    assert resp.status == status and (await resp.json())["error"]["code"] == code


async def test_a_quoted_boundary(echo: TestClient) -> None:
    resp = await echo.post("/form", data=body(field("a", b"1")), headers={"Content-Type": 'multipart/form-data; boundary="xyz"'})
    assert (await resp.json())["fields"] == {"a": ["1"]}


async def test_a_body_over_the_whole_bound_stops_early(echo: TestClient) -> None:
    huge = body(upload("image", "a.png", b"x" * 400_000))
    resp = await echo.post("/form", data=huge, headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    answer = await resp.json()
    assert resp.status == 413 and answer["error"]["code"] == "image.upload_too_large"


# --- split while it arrives: any cut of the body into pieces reads as the whole body does ------------

REAL = body(field("prompt", b"a cat\r\n--xy"), upload("image", "a.png", b"\r\n--xy-\r\n-xyz\r" * 5),
            upload("mask", "m.png", b"M\r\n"), epilogue=b"\r\n")  # fmt: skip
CUT_BODIES = [
    REAL,
    b"pre\r\n" + REAL,
    body(field("size", b"")),
    body(field("a", b"1"), preamble=b"--xy\r\n"),  # a preamble that almost opens
    b"--xyz \t\r\n" + field("a", b"1") + b"\r\n--xyz--",  # padding after a delimiter
    b"--xyz\r\n" + field("a", b"1"),  # cut off
    b"--xyz\r\n" + field("a", b"1") + b"\r\n--xy",  # cut off inside the closing delimiter
    b"--xyz junk\r\n" + field("a", b"1") + b"\r\n--xyz--",
    b"x--xyz\r\n" + field("a", b"1") + b"\r\n--xyz--",  # the first delimiter not at a line start
    b"--xyz\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n1\r\n--xyz--",
    b"--xyz\r\nno colon here\r\n\r\n1\r\n--xyz--",
    body(upload("image", "a.png", b"x" * 101)),
    b"--xyz",
    b"--xyz-",
]


def test_the_real_body_reads() -> None:
    form = parse_form(REAL, B, max_file_bytes=100)
    assert form.fields == {"prompt": ["a cat\r\n--xy"]} and form.files["image"][0].data == b"\r\n--xy-\r\n-xyz\r" * 5


def outcome(feed: Any) -> Any:
    try:
        form = feed()
    except ApiError as err:
        return (err.status, err.code, err.message, err.param)
    return form.fields, {k: [(f.filename, f.content_type, f.data) for f in v] for k, v in form.files.items()}


def fed(data: bytes, pieces: list[int]) -> Any:
    def run() -> Any:
        parser = FormParser(B, max_file_bytes=100)
        start = 0
        for end in [*pieces, len(data)]:
            parser.feed(data[start:end])
            start = end
        return parser.close()

    return outcome(run)


@pytest.mark.parametrize("data", CUT_BODIES, ids=[f"body{i}" for i in range(len(CUT_BODIES))])
def test_any_cut_into_two_pieces_reads_as_the_whole(data: bytes) -> None:
    whole = outcome(lambda: parse_form(data, B, max_file_bytes=100))
    for at in range(len(data) + 1):  # a delimiter, a header block, CRLFs: split at every byte
        assert fed(data, [at]) == whole, at


@pytest.mark.parametrize("data", CUT_BODIES, ids=[f"body{i}" for i in range(len(CUT_BODIES))])
def test_byte_by_byte_reads_as_the_whole(data: bytes) -> None:
    assert fed(data, list(range(1, len(data)))) == outcome(lambda: parse_form(data, B, max_file_bytes=100))


def test_an_empty_disposition_value_is_no_name_not_a_crash() -> None:
    # aiohttp's parser raises IndexError on `name=`; that part simply has no name
    err = refused(b"--xyz\r\nContent-Disposition: form-data; name=\r\n\r\n1\r\n--xyz--")
    assert (err.status, err.code) == (400, "request.invalid_form") and "no name" in err.message


async def test_a_body_arriving_in_small_network_pieces_is_read(echo: TestClient) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for at in range(0, len(REAL), 7):  # every delimiter is cut somewhere by a 7-byte piece
            yield REAL[at : at + 7]
            await asyncio.sleep(0.001)  # so the server reads them one by one

    resp = await echo.post("/form", data=pieces(), headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert await resp.json() == {"fields": {"prompt": ["a cat\r\n--xy"]}, "files": {"image": ["a.png"], "mask": ["m.png"]}}


async def test_a_broken_body_over_the_bound_is_413_not_400(echo: TestClient) -> None:
    # the splitter sees "no opening boundary" at once, but the body's bound is what answers
    resp = await echo.post("/form", data=b"junk" * 100_000, headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "image.upload_too_large"


async def test_a_broken_body_within_the_bound_is_400(echo: TestClient) -> None:
    resp = await echo.post("/form", data=b"junk" * 1000, headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert resp.status == 400 and "no opening boundary" in (await resp.json())["error"]["message"]
