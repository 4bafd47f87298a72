"""The trust model over real HTTP (docs/security.md): browser pages, media types, the token on events
and images, signed image URLs, and bad input that must never become a 500.

Each test is a hole the bridge had: a foreign page could POST a ``text/plain`` form, ``/api/events``
and the image cache ignored the token, a huge integer or a lone surrogate in a body was a 500.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hal0_bridge import errors
from hal0_bridge.app import create_app
from hal0_bridge.config import Config, build
from hal0_bridge.errors import ApiError
from hal0_bridge.http.server import BRIDGE_KEY, Access, json_response, make_app, route_policy
from hal0_bridge.signing import KEY_FILE

from tests.support.comfyui_standin import ComfyStandIn

GEN = "/v1/images/generations"
TOKEN = "trust-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
WRITES = [
    ("/api/comfyui/switchover", {"mode": "generation"}),
    ("/api/comfyui/pin", {"pinned": True}),
    ("/api/comfyui/cancel", {}),
    (GEN, {"prompt": "a cat", "size": "64x64"}),
]


def code_of(body: dict[str, Any]) -> str:
    return body["error"]["code"]


def own_origin(api: TestClient) -> str:
    return f"http://127.0.0.1:{api.port}"


@pytest.fixture
async def secured(aiohttp_client: Any, bridge_config: Callable[..., Config]) -> TestClient:
    return await aiohttp_client(create_app(bridge_config(server={"token": TOKEN})))


# ------------------------------------------------------------------------------- Origin


@pytest.mark.parametrize(("path", "body"), WRITES, ids=[p for p, _ in WRITES])
@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1:1", "https://127.0.0.1", "x"])
async def test_a_foreign_page_cannot_write(
    api: TestClient, standin: ComfyStandIn, path: str, body: Any, origin: str
) -> None:
    before = await (await api.get("/api/comfyui/status")).json()
    resp = await api.post(path, json=body, headers={"Origin": origin})
    assert resp.status == 403
    assert code_of(await resp.json()) == "request.forbidden_origin"
    assert standin.counters.prompts_submitted == 0
    assert (await (await api.get("/api/comfyui/status")).json())["pinned"] == before["pinned"]


async def test_a_cross_site_form_post_is_refused(api: TestClient, standin: ComfyStandIn) -> None:
    """The classic: <form enctype=text/plain> needs no CORS preflight, so only Origin stops it."""
    resp = await api.post(
        GEN, data=b'{"prompt": "pwned", "size": "64x64"}',
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )  # fmt: skip
    assert resp.status == 403
    assert standin.counters.prompts_submitted == 0


@pytest.mark.parametrize("origin", ["{own}", "http://localhost:{port}", "http://[::1]:{port}", "HTTP://127.0.0.1:{port}/"])
async def test_the_bridges_own_page_may_write(api: TestClient, origin: str) -> None:
    origin = origin.format(own=own_origin(api), port=api.port)
    resp = await api.post("/api/comfyui/cancel", json={}, headers={"Origin": origin})
    assert resp.status == 200, await resp.text()
    assert "Access-Control-Allow-Origin" not in resp.headers  # same origin: no CORS needed


async def test_a_loopback_alias_on_another_port_is_foreign(api: TestClient) -> None:
    resp = await api.post("/api/comfyui/cancel", headers={"Origin": f"http://localhost:{api.port + 1}"})
    assert resp.status == 403


async def test_reads_with_a_foreign_origin_are_refused_too(api: TestClient) -> None:
    """GET is checked as well: a WebSocket or EventSource from a foreign page carries Origin, and a
    legitimate cross-origin read needs CORS, i.e. server.allowed_origins, anyway."""
    resp = await api.get("/api/comfyui/status", headers={"Origin": "http://evil.example"})
    assert resp.status == 403
    assert (await api.get("/api/comfyui/status")).status == 200  # no Origin: not a browser page


async def test_an_image_embed_from_another_site_works(api: TestClient) -> None:
    """<img src> sends no Origin, only Sec-Fetch-Site: cross-site; a GET like that is fine."""
    answer = await (await api.post(GEN, json={"prompt": "x", "size": "64x64"})).json()
    resp = await api.get(answer["data"][0]["url"], headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 200 and resp.content_type == "image/png"


async def test_a_cross_site_write_without_origin_is_refused(api: TestClient) -> None:
    resp = await api.post("/api/comfyui/cancel", json={}, headers={"Sec-Fetch-Site": "cross-site"})
    assert resp.status == 403


async def test_public_url_is_an_own_origin(aiohttp_client: Any, bridge_config: Callable[..., Config]) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"public_url": "https://hal0.example.com"})))
    resp = await api.post(
        "/api/comfyui/cancel", json={},
        headers={"Origin": "https://hal0.example.com", "Host": "hal0.example.com"},
    )  # fmt: skip
    assert resp.status == 200


async def test_allowed_origins_get_cors_and_a_preflight(aiohttp_client: Any, bridge_config: Callable[..., Config]) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"allowed_origins": ["http://dash.lan:3000"]})))
    origin = {"Origin": "http://dash.lan:3000"}
    preflight = await api.options(
        "/api/comfyui/switchover",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://dash.lan:3000"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Content-Type" in preflight.headers["Access-Control-Allow-Headers"]
    resp = await api.post("/api/comfyui/switchover", json={"mode": "inference"}, headers=origin)
    assert resp.status == 503  # no arbiter: the answer itself, readable by the page
    assert resp.headers["Access-Control-Allow-Origin"] == "http://dash.lan:3000"
    assert "Origin" in resp.headers["Vary"]
    other = await api.options("/api/comfyui/switchover", headers={"Origin": "http://evil.example",
                                                                  "Access-Control-Request-Method": "POST"})
    assert other.status == 403 and "Access-Control-Allow-Origin" not in other.headers


async def test_dns_rebinding_is_refused_without_a_token(api: TestClient) -> None:
    """evil.example re-pointed at 127.0.0.1: Origin and Host agree, but the name is not ours."""
    rebound = {"Host": f"evil.example:{api.port}", "Origin": f"http://evil.example:{api.port}"}
    resp = await api.post("/api/comfyui/switchover", json={"mode": "generation"}, headers=rebound)
    assert resp.status == 403
    assert code_of(await resp.json()) == "request.forbidden_origin"
    assert (await api.get("/api/comfyui/status", headers={"Host": f"evil.example:{api.port}"})).status == 403
    for host in (f"localhost:{api.port}", f"127.0.0.1:{api.port}", f"[::1]:{api.port}"):
        assert (await api.get("/api/comfyui/status", headers={"Host": host})).status == 200, host


async def test_with_a_token_any_host_name_may_be_used(secured: TestClient) -> None:
    """Behind the token a rebound page gains nothing (it has no token), so names are not restricted."""
    resp = await secured.get("/api/comfyui/status", headers={"Host": f"gpu-box.lan:{secured.port}"})
    assert resp.status == 200


# ------------------------------------------------------------------------------- media types


@pytest.mark.parametrize(("path", "body"), WRITES, ids=[p for p, _ in WRITES])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""]
)
async def test_a_body_that_is_not_json_is_415(
    api: TestClient, standin: ComfyStandIn, path: str, body: Any, content_type: str
) -> None:
    resp = await api.post(path, data=json.dumps(body).encode(), headers={"Content-Type": content_type})
    assert resp.status == 415
    answer = await resp.json()
    assert code_of(answer) == "request.unsupported_media_type"
    assert answer["error"]["details"]["accepted"] == ["application/json"]
    assert standin.counters.prompts_submitted == 0


async def test_json_with_parameters_is_json(api: TestClient) -> None:
    resp = await api.post(
        "/api/comfyui/cancel", data=b"{}",
        headers={"Content-Type": "Application/JSON; charset=utf-8"},
    )  # fmt: skip
    assert resp.status == 200


async def test_a_post_without_a_body_needs_no_content_type(api: TestClient) -> None:
    """``curl -XPOST .../cancel``: nothing to read, nothing to refuse."""
    assert (await api.post("/api/comfyui/cancel")).status == 200
    resp = await api.post("/api/comfyui/switchover")  # a body it needs: its own 422 (DESIGN §4)
    assert resp.status == 422 and code_of(await resp.json()) == "comfyui.invalid_mode"


async def test_a_route_declares_its_own_media_types(aiohttp_client: Any) -> None:
    """What a multipart route (image edits) does: one decorator, the same middleware."""

    @route_policy(accepts=("multipart/form-data",))
    async def upload(request: web.Request) -> web.Response:
        form = await request.post()
        return json_response({"fields": sorted(form)})

    @route_policy(Access.OPEN, accepts=("application/json", "text/plain"))
    async def echo(request: web.Request) -> web.Response:
        return json_response({"text": (await request.read()).decode()})

    app = make_app(build({"server": {"token": TOKEN}}).server)
    app.router.add_post("/upload", upload)
    app.router.add_post("/echo", echo)
    client = await aiohttp_client(app)
    form = {"image": io.BytesIO(b"\x89PNG"), "prompt": "x"}
    assert (await client.post("/upload", data=form, headers=BEARER)).status == 200
    resp = await client.post("/upload", json={"prompt": "x"}, headers=BEARER)
    assert resp.status == 415 and (await resp.json())["error"]["details"]["accepted"] == ["multipart/form-data"]
    assert (await client.post("/upload", data=form)).status == 401  # undeclared access: the token
    assert (await client.post("/echo", data=b"hi", headers={"Content-Type": "text/plain"})).status == 200


# ------------------------------------------------------------------------------- the token on events


async def first_event(resp: Any) -> str:
    return (await asyncio.wait_for(resp.content.readline(), 5)).decode()


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({}, 401),
        ({"headers": {"Authorization": "Bearer nope"}}, 401),
        ({"params": {"token": "nope"}}, 401),
        ({"headers": BEARER}, 200),
        ({"params": {"token": TOKEN}}, 200),  # a browser EventSource cannot send headers
    ],
    ids=["none", "wrong_header", "wrong_query", "header", "query"],
)
async def test_events_need_the_token(secured: TestClient, kwargs: dict[str, Any], status: int) -> None:
    async with secured.get("/api/events", **kwargs) as resp:
        assert resp.status == status
        if status == 200:
            assert await first_event(resp) == "event: status\n"
        else:
            assert code_of(await resp.json()) == "auth.unauthorized"


async def test_events_stay_open_without_a_token(api: TestClient) -> None:
    async with api.get("/api/events") as resp:
        assert resp.status == 200 and await first_event(resp) == "event: status\n"


async def test_the_token_query_opens_nothing_but_events(secured: TestClient) -> None:
    assert (await secured.get("/v1/models", params={"token": TOKEN})).status == 401
    resp = await secured.post("/api/comfyui/cancel", params={"token": TOKEN})
    assert resp.status == 401


@pytest.mark.parametrize("path", ["/api/comfyui/status", "/api/info"])
async def test_status_and_info_stay_open(secured: TestClient, path: str) -> None:
    assert (await secured.get(path)).status == 200


async def test_the_openapi_document_needs_the_token(secured: TestClient) -> None:
    assert (await secured.get("/api/openapi.json")).status == 401
    assert (await secured.get("/api/openapi.json", headers=BEARER)).status == 200


# ------------------------------------------------------------------------------- signed image URLs


async def generate(api: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    resp = await api.post(GEN, json={"prompt": "a lighthouse", "size": "64x64"}, headers=headers or {})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def split(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}


async def test_image_urls_are_signed_and_open_without_the_token(secured: TestClient) -> None:
    answer = await generate(secured, BEARER)
    url = answer["data"][0]["url"]
    assert answer["_hal0"]["urls"] == [url]  # same shapes as before: strings
    path, query = split(url)
    assert path.startswith("/api/images/cache/") and set(query) == {"exp", "sig"}
    assert int(query["exp"]) == pytest.approx(time.time() + 86400, abs=60)
    image = await secured.get(url)  # what <img src> does: no header
    assert image.status == 200 and image.content_type == "image/png"


async def test_an_image_without_signature_or_token_is_401(secured: TestClient) -> None:
    path, _ = split((await generate(secured, BEARER))["data"][0]["url"])
    resp = await secured.get(path)
    assert resp.status == 401 and code_of(await resp.json()) == "auth.unauthorized"
    assert (await secured.get(path, headers=BEARER)).status == 200


async def test_a_tampered_signature_is_403(secured: TestClient) -> None:
    first = (await generate(secured, BEARER))["data"][0]["url"]
    second = (await generate(secured, BEARER))["data"][0]["url"]
    path, query = split(first)
    other_path, _ = split(second)
    flipped = query["sig"][:-1] + ("A" if query["sig"][-1] != "A" else "B")
    cases = [
        (path, {**query, "sig": flipped}),
        (path, {**query, "exp": str(int(query["exp"]) + 3600)}),  # a longer life is not for free
        (other_path, query),  # one image's signature does not open another
        (path, {"exp": query["exp"]}),
        (path, {"sig": query["sig"]}),
        (path, {**query, "exp": "9" * 40}),
    ]
    for target, params in cases:
        resp = await secured.get(target, params=params)
        assert resp.status == 403, (target, params)
        assert code_of(await resp.json()) == "auth.invalid_signature"


async def test_an_expired_signature_is_401_and_the_token_still_opens_it(secured: TestClient) -> None:
    path, _ = split((await generate(secured, BEARER))["data"][0]["url"])
    signer = secured.app[BRIDGE_KEY].signer
    expired = signer.sign(path, now=time.time() - signer.ttl - 5)
    resp = await secured.get(expired)
    assert resp.status == 401 and code_of(await resp.json()) == "auth.signature_expired"
    assert (await secured.get(expired, headers=BEARER)).status == 200


async def test_events_carry_the_signed_urls(secured: TestClient) -> None:
    async with secured.get("/api/events", headers=BEARER) as stream:
        await first_event(stream)
        answer = await generate(secured, BEARER)
        while True:
            line = (await asyncio.wait_for(stream.content.readline(), 10)).decode()
            if line == "event: image_generated\n":
                data = json.loads((await stream.content.readline()).decode().removeprefix("data: "))
                break
    assert data["urls"] == answer["_hal0"]["urls"]
    assert (await secured.get(data["urls"][0])).status == 200


async def test_the_signing_key_is_made_once_private_and_kept(
    aiohttp_client: Any, bridge_config: Callable[..., Config], tmp_path: Path
) -> None:
    config = bridge_config(server={"token": TOKEN})
    first = await aiohttp_client(create_app(config))
    url = (await generate(first, BEARER))["data"][0]["url"]
    key_file = config.server.state_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and len(key_file.read_bytes()) == 32
    key = key_file.read_bytes()
    await first.close()
    again = await aiohttp_client(create_app(config))  # a restart: the same key, old URLs still open
    assert (await again.get(url)).status == 200
    assert key_file.read_bytes() == key
    os.chmod(key_file, 0o644)
    await again.close()
    third = await aiohttp_client(create_app(config))
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # repaired, and still the same key
    assert key_file.read_bytes() == key and (await third.get(url)).status == 200


async def test_without_a_token_urls_are_plain_and_no_key_is_made(api: TestClient) -> None:
    url = (await generate(api))["data"][0]["url"]
    assert "?" not in url
    assert not (api.app[BRIDGE_KEY].config.server.state_dir / KEY_FILE).exists()


async def test_public_url_prefixes_the_signed_url(aiohttp_client: Any, bridge_config: Callable[..., Config]) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": TOKEN, "public_url": "http://127.0.0.1:9"})))
    url = (await generate(api, BEARER))["data"][0]["url"]
    assert url.startswith("http://127.0.0.1:9/api/images/cache/") and "&sig=" in url
    path, query = split(url)
    assert (await api.get(path, params=query)).status == 200


# ------------------------------------------------------------------------------- bad input: never a 500

JSON_ROUTES = ["/api/comfyui/switchover", "/api/comfyui/pin", GEN]
# a body that cannot be read: the image route's 400, or the control routes' own 422 (DESIGN §4)
UNREADABLE = {
    "/api/comfyui/switchover": (422, "comfyui.invalid_mode"),
    "/api/comfyui/pin": (422, "comfyui.invalid_pin"),
    GEN: (400, "request.invalid_json"),
}


@pytest.mark.parametrize("path", JSON_ROUTES)
@pytest.mark.parametrize(
    "body",
    [b"9" * 4301, b'{"prompt": "x", "seed": ' + b"1" * 5000 + b"}", b'{"mode": [-' + b"7" * 4400 + b"]}"],
    ids=["bare", "field", "nested"],
)
async def test_an_integer_past_pythons_digit_limit_is_refused_in_the_envelope(api: TestClient, path: str, body: bytes) -> None:
    resp = await api.post(path, data=body, headers={"Content-Type": "application/json"})
    status, code = UNREADABLE[path]
    assert resp.status == status
    assert code_of(await resp.json()) == code


@pytest.mark.parametrize(
    ("path", "body", "status", "code"),
    [
        (GEN, {"prompt": "x", "\ud800": 1}, 422, "request.unknown_field"),
        (GEN, {"prompt": "x", "extra_body": {"\udfff\ud800": 1}}, 422, "request.unknown_field"),
        (GEN, {"prompt": "x", "model": "\ud800"}, 404, "image.model_not_curated"),
        (GEN, {"prompt": "x", "size": "\udc00x64"}, 422, "image.invalid_size"),
        ("/api/comfyui/switchover", {"mode": "generation", "\ud800": True}, 422, "request.unknown_field"),
        ("/api/comfyui/switchover", {"mode": "\ud83d"}, 422, "comfyui.invalid_mode"),
        ("/api/comfyui/pin", {"pinned": True, "\ud800": 1}, 422, "request.unknown_field"),
    ],
)
async def test_a_lone_surrogate_is_echoed_as_valid_json(
    api: TestClient, path: str, body: dict[str, Any], status: int, code: str
) -> None:
    raw = json.dumps(body, ensure_ascii=True).encode()  # how JSON carries a lone surrogate: \\ud800
    resp = await api.post(path, data=raw, headers={"Content-Type": "application/json"})
    assert resp.status == status
    answer = json.loads(await resp.read())  # valid JSON that says what was sent
    assert code_of(answer) == code
    if answer["error"]["param"] is not None and code == "request.unknown_field":
        assert any("\ud800" <= ch <= "\udfff" for ch in answer["error"]["param"])


def test_the_envelope_can_carry_any_text_back() -> None:
    """The rule in one place: whatever JSON can carry in, the envelope can carry back out."""
    err = ApiError(errors.UNKNOWN_FIELD, "unknown field", param="a\ud800b\udfff")
    rendered = json_response(err.envelope(), status=422)
    assert isinstance(rendered.body, bytes)
    assert json.loads(rendered.body)["error"]["param"] == "a\ud800b\udfff"
