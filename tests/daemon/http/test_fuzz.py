"""Property-based fuzzing of every route (hypothesis, bounded): whatever arrives, the bridge answers as
its OpenAPI document says, never with a 500, every error in the envelope, and a refused request
changes nothing (no prompt reaches ComfyUI, the arbiter's mode/pin/switchover stay as they were).

Two bridges: one without slots (renders go straight to the in-process stand-in, whose counters tell
whether ComfyUI was touched) and one with an arbiter over real slot processes (a fake llama.cpp LLM
slot and the stand-in as img slot). The number of cases per test is ``HAL0_FUZZ_EXAMPLES`` (default
kept small so the file runs in well under a minute).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.config import Config
from hal0_bridge.http.server import BRIDGE_KEY
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from tests.daemon.conftest import arbiter_config
from tests.daemon.http.test_openapi import check_answer, fetch_doc, validate
from tests.support.comfyui_standin import ComfyStandIn

GEN = "/v1/images/generations"
POST_ROUTES = ("/api/comfyui/switchover", "/api/comfyui/pin", "/api/comfyui/cancel", GEN)
TOKEN = "fuzz-token-0123"
MAX_BODY = 4096  # small, so oversized bodies are cheap to send
EXAMPLES = int(os.environ.get("HAL0_FUZZ_EXAMPLES", "100"))
UPSTREAM = {"image.upstream_failed", "image.engine_unavailable", "image.timeout"}
SETTLE_GUARD = 30.0  # a switch that never ends must fail the test, not hang it

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------- strategies

huge_ints = st.integers(min_value=-(2**130), max_value=2**130)
scalars = (
    st.none() | st.booleans() | huge_ints | st.integers(-3, 300)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40)
)  # fmt: skip
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
good_image_fields = {
    "model": st.sampled_from(["sdxl-turbo", "SD15", "sd-1.5-pruned-emaonly", None]),
    "n": st.integers(1, 3),
    "size": st.sampled_from(["64x64", "128x64", " 64X128", "auto", None]),
    "response_format": st.sampled_from(["url", "b64_json", None]),
    "seed": st.integers(0, 2**64 - 1),
    "steps": st.integers(1, 3),
    "cfg": st.floats(0, 100) | st.integers(0, 100),
    "negative_prompt": st.text(max_size=20),
    "extra_body": st.fixed_dictionaries({}, optional={"seed": st.integers(0, 9), "steps": st.integers(1, 2)}),
    "quality": json_values,
}
bad_image_fields = {
    "prompt": st.sampled_from(["", "   ", "x" * 20_001]) | json_values,
    "model": st.sampled_from(["dall-e-3", "../x", ""]) | json_values,
    "n": st.integers(-2, 0) | st.integers(9, 2**70) | json_values,
    "size": st.sampled_from(["0x0", "64x4104", "99999x99999", "65x64", "axb", "64x64x64", ""])
    | st.text(max_size=12) | huge_ints,
    "response_format": st.sampled_from(["png", "URL"]) | json_values,
    "seed": st.integers(max_value=-1) | st.integers(min_value=2**64) | json_values,
    "steps": st.integers(max_value=0) | st.integers(min_value=201) | json_values,
    "cfg": st.floats(max_value=-0.001) | st.floats(min_value=100.001) | json_values,
    "negative_prompt": json_values,
    "extra_body": st.dictionaries(st.sampled_from(["seed", "steps", "cfg", "negative_prompt", "sampler"]),
                                  json_values, min_size=1, max_size=3) | json_values,
    "stpes": json_values,
}  # fmt: skip
prompts = st.text(min_size=1, max_size=40) | st.sampled_from(["{{ 7*7 }}", '"}}{%- raw %}\\', "a cat \u2603 \x00"])
good_switch_fields = {"force": st.booleans(), "pin": st.booleans()}
bad_switch_fields = {
    "mode": st.sampled_from(["GENERATION", "turbo", ""]) | json_values,
    "force": json_values,
    "pin": json_values,
    "now": json_values,
}


def mutated(
    required: dict[str, st.SearchStrategy[Any]],
    good: dict[str, st.SearchStrategy[Any]],
    bad: dict[str, st.SearchStrategy[Any]],
) -> st.SearchStrategy[dict[str, Any]]:
    """A valid object with none, one or two fields spoiled (none: the request is meant to succeed)."""
    spoiled_keys = st.lists(st.sampled_from(sorted(bad)), max_size=2, unique=True)
    spoilers = spoiled_keys.flatmap(lambda keys: st.fixed_dictionaries({k: bad[k] for k in keys}))
    base = st.fixed_dictionaries(required, optional=good)
    return st.builds(lambda valid, spoiled: {**valid, **spoiled}, base, spoilers)


image_objects = mutated({"prompt": prompts}, good_image_fields, bad_image_fields)
switch_objects = mutated({"mode": st.sampled_from(["generation", "inference"])}, good_switch_fields, bad_switch_fields)
pin_objects = mutated({"pinned": st.booleans()}, {}, {"pinned": json_values, "x": json_values})


def encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda v: json.dumps(v, ensure_ascii=False).encode())


# Python refuses to turn more than 4300 digits into an int (json.loads raises ValueError), so these
# are written as text: a valid body with one value replaced by a huge integer, anywhere in it.
huge_digits = st.integers(4301, 6000).map(lambda n: b"9" * n) | st.integers(4301, 4400).map(lambda n: b"-" + b"1" * n)
# lone surrogates ("\ud800") in field names and values: valid JSON, not encodable as UTF-8
surrogates = st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3)
surrogate_text = st.tuples(st.text(max_size=5), surrogates, st.text(max_size=5)).map("".join)


def with_huge_integer(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    marker = "__HUGE__"

    def place(obj: dict[str, Any], where: str, digits: bytes) -> bytes:
        target = {**obj, where: marker} if where != "[list]" else {**obj, "extra_body": [1, marker]}
        return json.dumps(target).encode().replace(f'"{marker}"'.encode(), digits)

    keys = st.sampled_from(["seed", "n", "steps", "cfg", "mode", "pinned", "force", "stpes", "[list]"])
    return st.builds(place, objects, keys, huge_digits) | huge_digits


def with_surrogates(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """A body whose field name or value holds a lone surrogate (sent as JSON's \\uXXXX escape)."""
    as_key = st.builds(lambda obj, key, value: {**obj, key: value}, objects, surrogate_text, json_values)
    as_value = st.builds(
        lambda obj, key, value: {**obj, key: value},
        objects, st.sampled_from(["prompt", "model", "size", "mode", "negative_prompt", "quality"]), surrogate_text,
    )  # fmt: skip
    return (as_key | as_value).map(lambda v: json.dumps(v, ensure_ascii=True).encode())


def deeply_nested(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Nesting from harmless to far past the parser's recursion limit, as a body or inside a field."""
    depth = st.integers(2, 3000) | st.integers(10_000, 50_000)

    def nest(obj: dict[str, Any], levels: int, key: str, opener: str) -> bytes:
        closer = {"[": "]", '{"a":': "}"}[opener]
        inner = (opener * levels + "0" + closer * levels).encode()
        if key == "(body)":
            return inner
        return json.dumps({**obj, key: "__DEEP__"}).encode().replace(b'"__DEEP__"', inner)

    keys = st.sampled_from(["(body)", "quality", "extra_body", "prompt", "mode", "pinned"])
    return st.builds(nest, objects, depth, keys, st.sampled_from(["[", '{"a":']))


def bodies(objects: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """JSON of the right shape (valid or spoiled), any JSON, garbage bytes, truncated JSON, bodies past
    the limit, huge integers, lone surrogates and deep nesting."""
    return st.one_of(
        encoded(objects),
        encoded(objects),
        encoded(json_values),
        st.binary(max_size=64),
        encoded(objects).map(lambda b: b[: max(1, len(b) // 2)]),
        st.integers(MAX_BODY + 1, MAX_BODY * 3).map(lambda n: b'{"prompt": "' + b"x" * n + b'"}'),
        with_huge_integer(objects),
        with_surrogates(objects),
        deeply_nested(objects),
    )


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40)
# every kind of Content-Type a client or a browser page can send; only application/json is accepted
content_types = st.sampled_from([
    "application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=latin-1",
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    "application/octet-stream", "text/json", "application/problem+json", "application/jsonx", "", ";", "*/*",
]) | header_text  # fmt: skip
auth_headers = st.one_of(
    st.none(),
    st.just(f"Bearer {TOKEN}"),
    header_text,
    header_text.map(lambda t: f"Bearer {t}"),
    st.sampled_from(
        ["Bearer", "Bearer ", f"bearer {TOKEN}", f"Basic {TOKEN}", f"Bearer {TOKEN} x", f"Bearer  {TOKEN}"]
    ),
)

# ------------------------------------------------------------------------------- checks


def arbiter_fields(status: dict[str, Any]) -> dict[str, Any]:
    return {k: status[k] for k in ("mode", "pinned", "switchover", "idle_restore_at")}


class Witness:
    """What a refused request must not change: ComfyUI's prompts, the arbiter's state, the cache."""

    def __init__(self, api: TestClient, standin: ComfyStandIn | None) -> None:
        self.api = api
        self.standin = standin
        self.doc: dict[str, Any] | None = None

    def _cache_files(self) -> int:
        return len(list(self.api.app[BRIDGE_KEY].config.image.cache_dir.glob("*.png")))

    async def take(self) -> dict[str, Any]:
        """The witnessed state; the status read on the way must match the documented schema too."""
        if self.doc is None:
            self.doc = await doc_of(self.api)
        status = await (await self.api.get("/api/comfyui/status")).json()
        validate(status, self.doc["components"]["schemas"]["Status"], self.doc)
        prompts = None if self.standin is None else self.standin.counters.prompts_submitted
        return {"arbiter": arbiter_fields(status), "prompts": prompts, "cache": self._cache_files()}

    async def settle(self) -> None:
        """After an accepted request: wait until a switch it started has ended."""

        async def idle() -> None:
            while (await (await self.api.get("/api/comfyui/status")).json())["switchover"]["active"]:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(idle(), SETTLE_GUARD)


async def doc_of(api: TestClient) -> dict[str, Any]:
    return await fetch_doc(api)


async def send(
    api: TestClient,
    witness: Witness,
    doc: dict[str, Any],
    method: str,
    path: str,
    template: str | None,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """One request and every property that must hold for it; returns the status."""
    before = await witness.take()
    resp = await api.request(method, path, data=body, headers=headers or {})
    raw = await resp.read()
    assert resp.status != 500, raw[:500]
    if resp.content_type == "application/json":
        answer = json.loads(raw)
    else:
        answer = None
    routed = not (resp.status >= 400 and answer["error"]["code"] in doc["x-any-route-error-codes"])
    if routed and template is not None and method.lower() in doc["paths"].get(template, {}):
        check_answer(doc, method, template, resp.status, answer, resp.content_type)
    event(f"{resp.status} {answer['error']['code'] if resp.status >= 400 and answer else ''}".strip())
    if resp.status >= 400:
        assert resp.content_type == "application/json", (method, path, resp.status, raw[:200])
        validate(answer, doc["components"]["schemas"]["ErrorEnvelope"], doc)
        after = await witness.take()
        code = answer["error"]["code"]
        if code in UPSTREAM and path == GEN:
            # a 502/503/504 is only possible for a valid request, once ComfyUI was really asked
            assert before["prompts"] is not None and after["prompts"] != before["prompts"], answer
        else:  # refused (cancel's own 502/503 included): nothing changed
            assert after == before, (method, path, answer)
        assert resp.status < 500 or code in UPSTREAM or code == "comfyui.arbiter_unavailable", answer
    else:
        await witness.settle()
    return resp.status


# ------------------------------------------------------------------------------- bridge without slots


@pytest.fixture
async def plain(aiohttp_client: Any, bridge_config: Callable[..., Config], standin: ComfyStandIn) -> Witness:
    config = bridge_config(server={"max_body_bytes": MAX_BODY}, image={"default_size": "64x64"})
    return Witness(await aiohttp_client(create_app(config)), standin)


@pytest.fixture
async def secured(aiohttp_client: Any, bridge_config: Callable[..., Config], standin: ComfyStandIn) -> Witness:
    config = bridge_config(server={"max_body_bytes": MAX_BODY, "token": TOKEN}, image={"default_size": "64x64"})
    return Witness(await aiohttp_client(create_app(config)), standin)


def refused_media_type(body: bytes | None, content_type: str) -> bool:
    """The rule, restated: a non-empty body whose media type is not application/json is a 415."""
    return bool(body) and content_type.split(";")[0].strip().lower() != "application/json"


@fuzz
@given(body=bodies(image_objects), content_type=content_types)
async def test_image_route_survives_any_body(plain: Witness, body: bytes, content_type: str) -> None:
    doc = await doc_of(plain.api)
    status = await send(plain.api, plain, doc, "POST", GEN, GEN, body=body, headers={"Content-Type": content_type})
    assert (status == 415) == refused_media_type(body, content_type), (content_type, status)


@fuzz
@given(body=bodies(switch_objects), content_type=content_types)
async def test_switchover_survives_any_body_without_an_arbiter(plain: Witness, body: bytes, content_type: str) -> None:
    doc = await doc_of(plain.api)
    path = "/api/comfyui/switchover"
    status = await send(plain.api, plain, doc, "POST", path, path, body=body, headers={"Content-Type": content_type})
    assert (status == 415) == refused_media_type(body, content_type), (content_type, status)


@fuzz
@given(route=st.sampled_from(["/api/comfyui/pin", "/api/comfyui/cancel"]), body=bodies(pin_objects),
       content_type=content_types)  # fmt: skip
async def test_pin_and_cancel_survive_any_body(plain: Witness, route: str, body: bytes, content_type: str) -> None:
    doc = await doc_of(plain.api)
    status = await send(plain.api, plain, doc, "POST", route, route, body=body, headers={"Content-Type": content_type})
    assert (status == 415) == refused_media_type(body, content_type), (content_type, status)


@fuzz
@given(segment=st.text(max_size=60) | st.from_regex(r"\A[0-9a-fA-F]{30,34}\.(png|PNG|jpg)\Z"))
async def test_cache_route_serves_nothing_for_random_names(plain: Witness, segment: str) -> None:
    doc = await doc_of(plain.api)
    status = await send(
        plain.api, plain, doc, "GET", "/api/images/cache/" + quote(segment, safe=""), "/api/images/cache/{name}"
    )
    assert status in (404, 405)


@fuzz
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    path=st.sampled_from([*POST_ROUTES, "/api/info", "/api/comfyui/status", "/v1/models", "/api/openapi.json"])
    | st.text(max_size=30).map(lambda t: "/api/" + quote(t, safe="/")),
    body=st.none() | st.binary(max_size=32),
)
async def test_any_method_on_any_path_is_documented_or_refused_in_the_envelope(
    plain: Witness, method: str, path: str, body: bytes | None
) -> None:
    assume(path.rstrip("/") != "/api/events")  # an endless stream, checked in test_openapi
    doc = await doc_of(plain.api)
    if method == "HEAD":  # no body to hold an envelope: only the status is checked
        assert (await plain.api.head(path)).status != 500
        return
    await send(plain.api, plain, doc, method, path, path, body=body)


@fuzz
@given(
    route=st.sampled_from([("POST", p) for p in POST_ROUTES] + [("GET", "/v1/models"), ("GET", "/api/comfyui/status")]),
    auth=auth_headers,
    extra=st.dictionaries(st.sampled_from(["X-Forwarded-For", "Content-Type", "Accept", "X-Api-Key"]), header_text,
                          max_size=2),
)  # fmt: skip
async def test_only_the_exact_bearer_token_opens_protected_routes(
    secured: Witness, route: tuple[str, str], auth: str | None, extra: dict[str, str]
) -> None:
    doc = await doc_of(secured.api)
    method, path = route
    headers = {**extra, **({"Authorization": auth} if auth is not None else {})}
    body = b'{"mode": "turbo", "pinned": "x"}' if method == "POST" else None  # refused after auth
    status = await send(secured.api, secured, doc, method, path, path, body=body, headers=headers)
    needs_token = doc["paths"][path][method.lower()]["security"] != []
    scheme, _, given_token = (auth or "").strip(" ").partition(" ")  # HTTP drops the value's outer spaces
    authorised = scheme.lower() == "bearer" and given_token.strip() == TOKEN
    assert (status == 401) == (needs_token and not authorised), (auth, status)


# ------------------------------------------------------------------------------- bridge with an arbiter


@pytest.fixture
async def arbitrated(aiohttp_client: Any, tmp_path: Path) -> Witness:
    app = create_app(arbiter_config(tmp_path, server={"max_body_bytes": MAX_BODY}, image={"default_size": "64x64"}))
    api = await aiohttp_client(app)
    bridge = app[BRIDGE_KEY]

    async def first_start_done() -> None:  # llm1 is a process slot: inference mode runs it by itself
        while bridge.arbiter.switching or bridge.slots.get("llm1").state != "ready":
            await asyncio.sleep(0.02)

    await asyncio.wait_for(first_start_done(), 30)
    return Witness(api, None)


@fuzz
@given(
    route=st.sampled_from(POST_ROUTES),
    body=st.one_of(bodies(switch_objects), bodies(image_objects), bodies(pin_objects)),
    content_type=content_types,
)
async def test_refused_requests_leave_the_arbiter_as_it_was(
    arbitrated: Witness, route: str, body: bytes, content_type: str
) -> None:
    doc = await doc_of(arbitrated.api)
    await send(arbitrated.api, arbitrated, doc, "POST", route, route, body=body, headers={"Content-Type": content_type})
