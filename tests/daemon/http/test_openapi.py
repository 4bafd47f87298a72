"""The OpenAPI document stays true: same routes as the router, real answers match its schemas, every
error code is in it, its limits are the ones enforced, its security is the auth rule.

No ``jsonschema`` in the venv, so :func:`validate` below checks the JSON-schema subset the document
uses (and refuses any keyword it does not know, so the document cannot outgrow the check silently).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hal0_bridge import errors
from hal0_bridge.app import create_app
from hal0_bridge.config import Config
from hal0_bridge.errors import ApiError, ErrorCode
from hal0_bridge.http.server import BRIDGE_KEY, Access, route_policies
from hal0_bridge.images import request as image_request
from hal0_bridge.images.catalogue import Catalogue

from tests.support.comfyui_standin import ComfyStandIn

GEN = "/v1/images/generations"
TOKEN = "openapi-token"

# ------------------------------------------------------------------------------- a small validator

_ANNOTATIONS = {"description", "default", "examples", "format", "title"}
_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    # JSON Schema: an integer is any number without a fraction (2.0 too)
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def resolve(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def errors_of(instance: Any, schema: dict[str, Any], doc: dict[str, Any], where: str = "$") -> list[str]:
    """Every way ``instance`` breaks ``schema`` (empty list: valid)."""
    unknown = set(schema) - _ANNOTATIONS - {
        "$ref", "type", "enum", "const", "properties", "required", "additionalProperties", "items",
        "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems", "anyOf", "oneOf", "not",
    }  # fmt: skip
    assert not unknown, f"validator does not know {unknown} at {where}"
    if "$ref" in schema:
        return errors_of(instance, resolve(doc, schema["$ref"]), doc, where)
    found: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[k](instance) for k in kinds):
            return [f"{where}: {instance!r:.80} is not {kinds}"]
    if "enum" in schema and not any(instance == e and type(instance) is type(e) for e in schema["enum"]):
        found.append(f"{where}: {instance!r:.80} not in {schema['enum']}")
    if "const" in schema and instance != schema["const"]:
        found.append(f"{where}: {instance!r:.80} != {schema['const']!r}")
    if _TYPES["number"](instance):
        if "minimum" in schema and instance < schema["minimum"]:
            found.append(f"{where}: {instance} < {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            found.append(f"{where}: {instance} > {schema['maximum']}")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            found.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(instance) > schema["maxLength"]:
            found.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            found.append(f"{where}: {instance!r:.80} does not match {schema['pattern']}")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            found.append(f"{where}: fewer than {schema['minItems']} items")
        for i, item in enumerate(instance):
            found += errors_of(item, schema.get("items", {}), doc, f"{where}[{i}]")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        found += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in instance]
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in props:
                found += errors_of(value, props[key], doc, f"{where}.{key}")
            elif extra is False:
                found.append(f"{where}: unexpected {key!r}")
            elif isinstance(extra, dict):
                found += errors_of(value, extra, doc, f"{where}.{key}")
    if "anyOf" in schema and all(errors_of(instance, s, doc, where) for s in schema["anyOf"]):
        found.append(f"{where}: matches none of anyOf")
    if "not" in schema and not errors_of(instance, schema["not"], doc, where):
        found.append(f"{where}: matches what `not` excludes")
    if "oneOf" in schema and sum(not errors_of(instance, s, doc, where) for s in schema["oneOf"]) != 1:
        found.append(f"{where}: does not match exactly one of oneOf")
    return found


def validate(instance: Any, schema: dict[str, Any], doc: dict[str, Any]) -> None:
    problems = errors_of(instance, schema, doc)
    assert not problems, problems


def operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return doc["paths"][path][method.lower()]


def check_answer(doc: dict[str, Any], method: str, path: str, status: int, body: Any, content_type: str) -> None:
    """A real answer is one the document describes: its status, its schema, and for errors a listed code."""
    responses = operation(doc, method, path)["responses"]
    assert str(status) in responses, f"{method} {path}: status {status} is not documented ({body!r:.200})"
    response = responses[str(status)]
    assert content_type in response["content"], f"{method} {path} {status}: {content_type}"
    schema = response["content"][content_type]["schema"]
    if content_type == "application/json":
        validate(body, schema, doc)
    if "x-error-codes" in response:
        assert body["error"]["code"] in response["x-error-codes"], (method, path, body)


def defined_codes() -> list[ErrorCode]:
    return [v for v in vars(errors).values() if isinstance(v, ErrorCode)]


async def fetch_doc(api: TestClient) -> dict[str, Any]:
    token = api.app[BRIDGE_KEY].config.server.token  # with a token, the document needs it too
    resp = await api.get("/api/openapi.json", headers={"Authorization": f"Bearer {token}"} if token else {})
    assert resp.status == 200 and resp.content_type == "application/json"
    return await resp.json()


def router_operations(app: web.Application) -> set[tuple[str, str]]:
    """(method, path) the router serves; HEAD is aiohttp's automatic twin of every GET."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


# ------------------------------------------------------------------------------- the document itself


async def test_document_paths_and_methods_are_exactly_the_routers(api: TestClient) -> None:
    doc = await fetch_doc(api)
    documented = {(method.upper(), path) for path, methods in doc["paths"].items() for method in methods}
    assert documented == router_operations(api.app)


async def test_document_is_openapi_3_1_and_every_ref_resolves(api: TestClient) -> None:
    doc = await fetch_doc(api)
    assert doc["openapi"] == "3.1.0"
    refs = re.findall(r'"\$ref":\s*"([^"]+)"', json.dumps(doc))
    assert refs
    for ref in refs:
        assert isinstance(resolve(doc, ref), dict), ref


async def test_every_error_code_is_documented_with_its_status_and_type(api: TestClient) -> None:
    doc = await fetch_doc(api)
    table = {e["code"]: (e["status"], e["type"]) for e in doc["x-error-codes"]}
    assert table == {c.code: (c.status, c.type) for c in defined_codes()}
    assert set(doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["error"]["properties"]["code"]["enum"]) \
        == set(table)


async def test_every_error_code_belongs_to_some_operation_or_to_every_route(api: TestClient) -> None:
    doc = await fetch_doc(api)
    listed = set(doc["x-any-route-error-codes"])
    for methods in doc["paths"].values():
        for op in methods.values():
            for status, response in op["responses"].items():
                for code in response.get("x-error-codes", []):
                    assert next(c for c in defined_codes() if c.code == code).status == int(status), code
                    listed.add(code)
    assert listed == {c.code for c in defined_codes()}


async def test_retry_after_is_documented_where_a_code_sends_it(api: TestClient) -> None:
    doc = await fetch_doc(api)
    retrying = {c.code for c in defined_codes() if c.retry_after is not None}
    for methods in doc["paths"].values():
        for op in methods.values():
            for response in op["responses"].values():
                if retrying & set(response.get("x-error-codes", [])):
                    assert "Retry-After" in response["headers"]


EXPECTED_ACCESS = {
    ("GET", "/api/info"): Access.OPEN,
    ("GET", "/api/comfyui/status"): Access.OPEN,
    ("GET", "/api/images/cache/{name}"): Access.SIGNED,
    ("GET", "/api/events"): Access.TOKEN_QUERY,
    ("GET", "/"): Access.OPEN,
    ("GET", "/ui/{name}"): Access.OPEN,
    ("GET", "/metrics"): Access.OPEN,
    ("GET", "/comfyui"): Access.BROWSER,
    **{(method, "/comfyui/{path}"): Access.BROWSER for method in ("GET", "POST", "PUT", "PATCH", "DELETE")},
}  # every other route: the token (DESIGN §8 "Trust model")
ACCEPTS = {"/v1/images/edits": ["multipart/form-data"], "/comfyui/{path}": ["*/*"]}  # others: JSON


async def test_security_is_each_routes_policy(aiohttp_client: Any, bridge_config: Any) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": TOKEN})))
    doc = await fetch_doc(api)
    policies = route_policies(api.app)
    schemes = {"bearer": {"bearer": []}, "signed": {"signedUrl": []}, "query": {"tokenQuery": []},
               "cookie": {"sessionCookie": []}}  # fmt: skip
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            access = policies[(method.upper(), path)].access
            assert access == EXPECTED_ACCESS.get((method.upper(), path), Access.TOKEN), (method, path)
            expected = {
                Access.OPEN: [],
                Access.TOKEN: [schemes["bearer"]],
                Access.SIGNED: [schemes["bearer"], schemes["signed"]],
                Access.TOKEN_QUERY: [schemes["bearer"], schemes["query"]],
                Access.BROWSER: [schemes["bearer"], schemes["cookie"]],
            }[access]
            assert op["security"] == expected, (method, path)
            assert ("401" in op["responses"]) == (access is not Access.OPEN), (method, path)
            for scheme in op["security"]:
                for name in scheme:
                    declared = doc["components"]["securitySchemes"][name]
                    if declared["type"] == "apiKey" and declared["in"] == "query":  # also a listed parameter
                        assert declared["name"] in {p["name"] for p in op["parameters"] if p["in"] == "query"}
            if method in ("post", "put", "patch", "delete"):
                accepts = list(policies[(method.upper(), path)].accepts)
                assert "415" in op["responses"] and op["x-accepts"] == accepts, path
                assert accepts == ACCEPTS.get(path, ["application/json"]), path


async def test_without_a_token_bearer_is_optional(api: TestClient) -> None:
    doc = await fetch_doc(api)
    assert operation(doc, "POST", GEN)["security"] == [{"bearer": []}, {}]
    assert operation(doc, "GET", "/api/comfyui/status")["security"] == []


async def test_protected_operations_really_answer_401_without_the_token(
    aiohttp_client: Any, bridge_config: Any
) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": TOKEN})))
    doc = await fetch_doc(api)
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if op["security"] and path != "/api/events":
                kwargs = {"json": {}} if method == "post" else {}
                resp = await api.request(method.upper(), path.replace("{name}", "x.png"), **kwargs)
                body = await resp.json()
                assert resp.status == 401, (method, path)
                check_answer(doc, method, path, 401, body, "application/json")


# ------------------------------------------------------------------------------- limits = enforced rules


def limits_cases(config: Config) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, body at the documented limit, body just past it)."""
    ir, image = image_request, config.image
    base = {"prompt": "x"}
    return [
        ("n", {**base, "n": image.max_n}, {**base, "n": image.max_n + 1}),
        ("n_low", {**base, "n": 1}, {**base, "n": 0}),
        ("seed", {**base, "seed": ir.MAX_SEED}, {**base, "seed": ir.MAX_SEED + 1}),
        ("seed_low", {**base, "seed": 0}, {**base, "seed": -1}),
        ("steps", {**base, "steps": ir.MAX_STEPS}, {**base, "steps": ir.MAX_STEPS + 1}),
        ("steps_low", {**base, "steps": 1}, {**base, "steps": 0}),
        ("cfg", {**base, "cfg": ir.MAX_CFG}, {**base, "cfg": ir.MAX_CFG + 0.5}),
        ("cfg_low", {**base, "cfg": 0}, {**base, "cfg": -0.5}),
        ("prompt", {"prompt": "x" * ir.MAX_PROMPT_CHARS}, {"prompt": "x" * (ir.MAX_PROMPT_CHARS + 1)}),
        ("prompt_low", {"prompt": "x"}, {"prompt": ""}),
        ("negative_prompt", {**base, "negative_prompt": "x" * ir.MAX_PROMPT_CHARS},
         {**base, "negative_prompt": "x" * (ir.MAX_PROMPT_CHARS + 1)}),
        ("extra_body", {**base, "extra_body": {"steps": 2}}, {**base, "extra_body": {"sampler": "x"}}),
        ("extra_twice", {**base, "seed": 1, "extra_body": {"seed": None, "steps": 2}},
         {**base, "seed": 1, "extra_body": {"seed": 1}}),
        ("integral_float", {**base, "n": 2.0, "steps": 3.0}, {**base, "n": 1.5}),
        ("negative_prompt_type", {**base, "negative_prompt": None}, {**base, "negative_prompt": {}}),
        ("unknown_field", {**base, "quality": "hd"}, {**base, "stpes": 4}),
        ("response_format", {**base, "response_format": "b64_json"}, {**base, "response_format": "png"}),
        ("size_text", {**base, "size": "auto"}, {**base, "size": "big"}),
    ]  # fmt: skip


async def test_documented_image_limits_are_the_enforced_ones(api: TestClient) -> None:
    doc = await fetch_doc(api)
    bridge_cfg: Config = api.app[BRIDGE_KEY].config
    catalogue = Catalogue.from_config(bridge_cfg)
    schema = doc["components"]["schemas"]["ImageRequest"]
    for name, inside, outside in limits_cases(bridge_cfg):
        assert not errors_of(inside, schema, doc), name
        image_request.parse(inside, catalogue, bridge_cfg.image)  # accepted by the real parser
        assert errors_of(outside, schema, doc), name
        with pytest.raises(ApiError) as refused:
            image_request.parse(outside, catalogue, bridge_cfg.image)
        assert refused.value.status in (404, 422), name


async def test_image_request_schema_names_exactly_the_accepted_fields(api: TestClient) -> None:
    doc = await fetch_doc(api)
    schema = doc["components"]["schemas"]["ImageRequest"]
    assert set(schema["properties"]) == set(image_request.KNOWN)
    assert set(schema["properties"]["extra_body"]["properties"]) == set(image_request.HAL0_EXTRAS)


# ------------------------------------------------------------------------------- real answers match


async def test_read_routes_answer_as_documented(api: TestClient) -> None:
    doc = await fetch_doc(api)
    for path in ("/api/info", "/api/comfyui/status", "/v1/models"):
        resp = await api.get(path)
        check_answer(doc, "GET", path, resp.status, await resp.json(), resp.content_type)
        assert resp.status == 200


async def test_status_while_rendering_matches_the_document(api: TestClient, standin: ComfyStandIn) -> None:
    doc = await fetch_doc(api)
    standin.settings.step_seconds = 0.1
    task = asyncio.ensure_future(api.post(GEN, json={"prompt": "x", "size": "64x64", "steps": 20}))
    seen_progress = False
    for _ in range(200):
        body = await (await api.get("/api/comfyui/status")).json()
        validate(body, doc["components"]["schemas"]["Status"], doc)
        if body["progress"] is not None:
            seen_progress = True
            break
        await asyncio.sleep(0.02)
    standin.settings.step_seconds = 0.0
    assert (await task).status == 200
    assert seen_progress


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "a lighthouse", "size": "64x64"},
        {"prompt": "two cats", "size": "64x64", "n": 2, "response_format": "b64_json"},
        {"prompt": "x", "model": "sd15", "size": "64x64", "seed": 3, "steps": 2, "cfg": 1.5,
         "extra_body": {"negative_prompt": "blur"}},
    ],
    ids=["url", "b64_json_n2", "extras"],
)
async def test_image_answers_match_the_document(api: TestClient, body: dict[str, Any]) -> None:
    doc = await fetch_doc(api)
    validate(body, doc["components"]["schemas"]["ImageRequest"], doc)
    resp = await api.post(GEN, json=body)
    answer = await resp.json()
    assert resp.status == 200, answer
    check_answer(doc, "POST", GEN, 200, answer, resp.content_type)
    image = await api.get(answer["_hal0"]["urls"][0])
    check_answer(doc, "GET", "/api/images/cache/{name}", image.status, None, image.content_type)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/comfyui/switchover", {"mode": "generation"}, 503),
        ("POST", "/api/comfyui/switchover", {"mode": "inference"}, 503),
        ("POST", "/api/comfyui/switchover", {"mode": "turbo"}, 422),
        ("POST", "/api/comfyui/switchover", b"{", 422),
        ("POST", "/api/comfyui/switchover", {"mode": "generation", "now": 1}, 422),
        ("POST", "/api/comfyui/pin", {"pinned": True}, 503),
        ("POST", "/api/comfyui/pin", {"pinned": "yes"}, 422),
        ("POST", "/api/comfyui/cancel", None, 200),
        ("POST", GEN, {"prompt": ""}, 422),
        ("POST", GEN, {"prompt": "x", "model": "dall-e-3"}, 404),
        ("POST", GEN, [1], 422),
        ("POST", GEN, {"prompt": "x" * 300_000}, 413),
        ("GET", "/api/images/cache/{name}", None, 404),
    ],
)
async def test_write_and_error_answers_match_the_document(
    api: TestClient, method: str, path: str, body: Any, status: int
) -> None:
    doc = await fetch_doc(api)
    kwargs = {"data": body, "headers": {"Content-Type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    resp = await api.request(method, path.replace("{name}", "0" * 32 + ".png"), **kwargs)
    assert resp.status == status
    check_answer(doc, method, path, status, await resp.json(), resp.content_type)


async def test_comfyui_down_answers_match_the_document(api: TestClient, standin: ComfyStandIn) -> None:
    doc = await fetch_doc(api)
    await standin.stop()
    for path, body in ((GEN, {"prompt": "x", "size": "64x64"}), ("/api/comfyui/cancel", {})):
        resp = await api.post(path, json=body)
        assert resp.status == 503
        check_answer(doc, "POST", path, 503, await resp.json(), resp.content_type)
        assert resp.headers["Retry-After"].isdigit()


async def test_events_stream_is_documented_as_sse(api: TestClient) -> None:
    doc = await fetch_doc(api)
    async with api.get("/api/events") as resp:
        assert resp.status == 200
        assert resp.content_type in operation(doc, "GET", "/api/events")["responses"]["200"]["content"]
        line = await resp.content.readline()
        assert line == b"event: status\n"
        data = (await resp.content.readline()).decode()
        validate(json.loads(data.removeprefix("data: ")), doc["components"]["schemas"]["Status"], doc)


async def test_any_route_errors_match_the_envelope(api: TestClient) -> None:
    doc = await fetch_doc(api)
    for resp in (await api.get("/api/nothing"), await api.delete(GEN)):
        body = await resp.json()
        validate(body, doc["components"]["schemas"]["ErrorEnvelope"], doc)
        assert body["error"]["code"] in doc["x-any-route-error-codes"]
