"""Bad input on every write route: a 4xx in the envelope, never a 500, and nothing changes.

"Nothing changes" is checked where it could: the stand-in saw no prompt, the status snapshot and the
image cache are as before.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.comfyui_standin import ComfyStandIn

GEN = "/v1/images/generations"
JSON_BODY = {"Content-Type": "application/json"}


def assert_envelope(body: dict[str, Any], code: str, param: str | None = None) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "type", "param", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    if param is not None:
        assert error["param"] == param


async def snapshot(api: TestClient) -> dict[str, Any]:
    status = await (await api.get("/api/comfyui/status")).json()
    for volatile in ("updated_at", "memory", "queue", "engine", "reachable", "progress"):
        status.pop(volatile)
    return status


BAD_IMAGE_BODIES = [
    ("malformed_json", b'{"prompt": "a cat"', 400, "request.invalid_json", None),
    ("empty_body", b"", 400, "request.invalid_json", None),
    ("not_utf8", b'{"prompt": "\xff\xfe"}', 400, "request.invalid_json", None),
    ("deeply_nested", b"[" * 100_000 + b"]" * 100_000, 400, "request.invalid_json", None),
    ("array_body", b'["a cat"]', 422, "request.body_not_object", None),
    ("string_body", b'"a cat"', 422, "request.body_not_object", None),
    ("unknown_field", b'{"prompt": "a cat", "stpes": 4}', 422, "request.unknown_field", "stpes"),
    ("unknown_extra_body_field", b'{"prompt": "a cat", "extra_body": {"sampler": "x"}}', 422,
     "request.unknown_field", "extra_body.sampler"),
    ("missing_prompt", b'{"model": "sdxl-turbo"}', 422, "image.prompt_required", "prompt"),
    ("empty_prompt", b'{"prompt": ""}', 422, "image.prompt_required", "prompt"),
    ("blank_prompt", b'{"prompt": "   \\n "}', 422, "image.prompt_required", "prompt"),
    ("prompt_object", b'{"prompt": {}}', 422, "image.invalid_parameter", "prompt"),
    ("prompt_too_long", json.dumps({"prompt": "x" * 20_001}).encode(), 422, "image.invalid_parameter", "prompt"),
    ("model_list", b'{"prompt": "a cat", "model": []}', 422, "image.invalid_parameter", "model"),
    ("model_unknown", b'{"prompt": "a cat", "model": "dall-e-3"}', 404, "image.model_not_curated", "model"),
    ("size_int", b'{"prompt": "a cat", "size": 5}', 422, "image.invalid_size", "size"),
    ("size_zero", b'{"prompt": "a cat", "size": "0x0"}', 422, "image.invalid_size", "size"),
    ("size_huge", b'{"prompt": "a cat", "size": "99999x99999"}', 422, "image.invalid_size", "size"),
    ("size_letters", b'{"prompt": "a cat", "size": "axb"}', 422, "image.invalid_size", "size"),
    ("size_not_multiple_of_8", b'{"prompt": "a cat", "size": "513x512"}', 422, "image.invalid_size", "size"),
    ("size_too_small", b'{"prompt": "a cat", "size": "32x32"}', 422, "image.invalid_size", "size"),
    ("n_string", b'{"prompt": "a cat", "n": "two"}', 422, "image.invalid_n", "n"),
    ("n_zero", b'{"prompt": "a cat", "n": 0}', 422, "image.invalid_n", "n"),
    ("n_thousand", b'{"prompt": "a cat", "n": 1000}', 422, "image.invalid_n", "n"),
    ("n_float", b'{"prompt": "a cat", "n": 1.5}', 422, "image.invalid_n", "n"),
    ("n_bool", b'{"prompt": "a cat", "n": true}', 422, "image.invalid_n", "n"),
    ("response_format_bad", b'{"prompt": "a cat", "response_format": "jpeg"}', 422, "image.invalid_parameter",
     "response_format"),
    ("response_format_list", b'{"prompt": "a cat", "response_format": []}', 422, "image.invalid_parameter",
     "response_format"),
    ("seed_negative", b'{"prompt": "a cat", "seed": -1}', 422, "image.invalid_parameter", "seed"),
    ("seed_too_big", b'{"prompt": "a cat", "seed": 18446744073709551616}', 422, "image.invalid_parameter", "seed"),
    ("seed_string", b'{"prompt": "a cat", "seed": "42"}', 422, "image.invalid_parameter", "seed"),
    ("steps_zero", b'{"prompt": "a cat", "steps": 0}', 422, "image.invalid_parameter", "steps"),
    ("steps_in_extra_body_too_big", b'{"prompt": "a cat", "extra_body": {"steps": 100000}}', 422,
     "image.invalid_parameter", "steps"),
    ("cfg_nan", b'{"prompt": "a cat", "cfg": NaN}', 422, "image.invalid_parameter", "cfg"),
    ("cfg_string", b'{"prompt": "a cat", "cfg": "high"}', 422, "image.invalid_parameter", "cfg"),
    ("negative_prompt_number", b'{"prompt": "a cat", "negative_prompt": 3}', 422, "image.invalid_parameter",
     "negative_prompt"),
    ("extra_body_not_object", b'{"prompt": "a cat", "extra_body": "seed=1"}', 422, "image.invalid_parameter",
     "extra_body"),
    ("seed_twice_equal", b'{"prompt": "a cat", "seed": 1, "extra_body": {"seed": 1}}', 422, "image.invalid_parameter",
     "seed"),
    ("negative_prompt_object", b'{"prompt": "a cat", "negative_prompt": {}}', 422, "image.invalid_parameter",
     "negative_prompt"),
    ("n_false", b'{"prompt": "a cat", "n": false}', 422, "image.invalid_n", "n"),
    ("seed_conflict", b'{"prompt": "a cat", "seed": 1, "extra_body": {"seed": 2}}', 422, "image.invalid_parameter",
     "seed"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [case[1:] for case in BAD_IMAGE_BODIES],
    ids=[case[0] for case in BAD_IMAGE_BODIES],
)
async def test_bad_image_request_is_refused_before_comfyui(
    api: TestClient, standin: ComfyStandIn, body: bytes, status: int, code: str, param: str | None
) -> None:
    before = await snapshot(api)
    resp = await api.post(GEN, data=body, headers=JSON_BODY)
    assert resp.status == status
    assert resp.content_type == "application/json"
    assert_envelope(await resp.json(), code, param)
    assert standin.counters.prompts_submitted == 0
    assert await snapshot(api) == before


async def test_oversized_body_is_413(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(GEN, data=json.dumps({"prompt": "x" * 300_000}), headers=JSON_BODY)
    assert resp.status == 413
    assert_envelope(await resp.json(), "request.body_too_large")
    assert standin.counters.prompts_submitted == 0


BAD_SWITCH_BODIES = [
    ("malformed", b"{mode", 422, "comfyui.invalid_mode"),
    ("empty", b"", 422, "comfyui.invalid_mode"),
    ("not_object", b'"generation"', 422, "comfyui.invalid_mode"),
    ("no_mode", b"{}", 422, "comfyui.invalid_mode"),
    ("mode_unknown", b'{"mode": "turbo"}', 422, "comfyui.invalid_mode"),
    ("mode_list", b'{"mode": ["generation"]}', 422, "comfyui.invalid_mode"),
    ("force_string", b'{"mode": "inference", "force": "yes"}', 422, "comfyui.invalid_mode"),
    ("pin_number", b'{"mode": "generation", "pin": 1}', 422, "comfyui.invalid_mode"),
    ("pin_with_inference", b'{"mode": "inference", "pin": true}', 422, "comfyui.invalid_mode"),
    ("unknown_field", b'{"mode": "generation", "now": true}', 422, "request.unknown_field"),
]


@pytest.mark.parametrize(
    ("body", "status", "code"), [c[1:] for c in BAD_SWITCH_BODIES], ids=[c[0] for c in BAD_SWITCH_BODIES]
)
async def test_bad_switchover_body(api: TestClient, body: bytes, status: int, code: str) -> None:
    before = await snapshot(api)
    resp = await api.post("/api/comfyui/switchover", data=body, headers=JSON_BODY)
    assert resp.status == status
    assert_envelope(await resp.json(), code)
    assert await snapshot(api) == before


@pytest.mark.parametrize(
    "body", [b'{"pinned": "true"}', b'{"pinned": 1}', b"{}", b"[true]", b"null", b"{pinned", b""]
)
async def test_bad_pin_body(api: TestClient, body: bytes) -> None:
    resp = await api.post("/api/comfyui/pin", data=body, headers=JSON_BODY)
    assert resp.status == 422
    assert_envelope(await resp.json(), "comfyui.invalid_pin", "pinned")


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [("/api/comfyui/switchover", b'{"mode": "generation", "froce": true}', "froce"),
     ("/api/comfyui/pin", b'{"pinned": true, "x": 1}', "x")],
)  # fmt: skip
async def test_a_mistyped_field_names_itself(api: TestClient, path: str, body: bytes, param: str) -> None:
    resp = await api.post(path, data=body, headers={"Content-Type": "application/json"})
    assert resp.status == 422
    assert_envelope(await resp.json(), "request.unknown_field", param)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/comfyui/switchover", {"mode": "generation"}), ("/api/comfyui/switchover", {"mode": "inference"}),
     ("/api/comfyui/pin", {"pinned": True}), ("/api/comfyui/pin", {"pinned": False})],
)  # fmt: skip
async def test_without_an_arbiter_every_write_path_is_503(api: TestClient, path: str, body: dict[str, Any]) -> None:
    """No img slot: nothing is switched or pinned, and no answer pretends otherwise (a switch to
    generation used to be a 200 noop)."""
    before = await snapshot(api)
    resp = await api.post(path, json=body)
    assert resp.status == 503
    assert_envelope(await resp.json(), "comfyui.arbiter_unavailable")
    assert await snapshot(api) == before


async def test_unknown_route_is_404_in_the_envelope(api: TestClient) -> None:
    resp = await api.get("/api/nothing-here")
    assert resp.status == 404
    assert_envelope(await resp.json(), "request.not_found")


async def test_wrong_method_is_405_in_the_envelope(api: TestClient) -> None:
    resp = await api.get(GEN)
    assert resp.status == 405
    body = await resp.json()
    assert_envelope(body, "request.method_not_allowed")
    assert body["error"]["details"]["allowed"] == ["POST"]


@pytest.mark.parametrize(
    "name",
    ["..%2F..%2Fetc%2Fpasswd", "..", "x.png", "0123456789abcdef0123456789abcdef.png", "%00.png",
     "0123456789ABCDEF0123456789ABCDEF.png"],
)
async def test_cache_serves_no_other_names(api: TestClient, name: str) -> None:
    resp = await api.get(f"/api/images/cache/{name}")
    assert resp.status == 404
    body = await resp.json()
    # ".." is normalised away by the URL layer and then matches no route at all
    assert_envelope(body, "request.not_found" if name == ".." else "image.cache_miss")
