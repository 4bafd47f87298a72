"""The image route end to end against the ComfyUI stand-in: shapes, parameters honoured, cache, failures."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.png import png_size

GEN = "/v1/images/generations"


async def last_graph(standin: ComfyStandIn) -> dict[str, Any]:
    """The graph ComfyUI really received (from its own /history)."""
    async with aiohttp.ClientSession() as session, session.get(f"{standin.url}/history") as resp:
        history = await resp.json()
    entry = list(history.values())[-1]
    return entry["prompt"][2]


def node(graph: dict[str, Any], class_type: str) -> dict[str, Any]:
    return next(n["inputs"] for n in graph.values() if n["class_type"] == class_type)


async def test_url_response_serves_a_real_png_of_the_requested_size(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(GEN, json={"prompt": "a lighthouse", "size": "256x192"})
    assert resp.status == 200
    body = await resp.json()
    assert isinstance(body["created"], int)
    [item] = body["data"]
    assert item["url"].startswith("/api/images/cache/") and item["url"].endswith(".png")
    image = await api.get(item["url"])
    assert image.status == 200
    assert image.content_type == "image/png"
    assert "immutable" in image.headers["Cache-Control"]
    assert png_size(await image.read()) == (256, 192)


async def test_b64_json_with_n_2_returns_two_pngs(api: TestClient) -> None:
    resp = await api.post(GEN, json={"prompt": "two cats", "n": 2, "size": "128x128", "response_format": "b64_json"})
    body = await resp.json()
    assert resp.status == 200, body
    assert len(body["data"]) == 2
    pngs = [base64.b64decode(item["b64_json"]) for item in body["data"]]
    assert [png_size(p) for p in pngs] == [(128, 128), (128, 128)]
    assert body["_hal0"]["n"] == 2 and len(body["_hal0"]["urls"]) == 2


async def test_extras_are_honoured_and_reported(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(
        GEN,
        json={"prompt": "a fox", "size": "128x128", "seed": 1234, "steps": 3, "cfg": 2.5, "negative_prompt": "blur"},
    )
    used = (await resp.json())["_hal0"]
    assert (used["seed"], used["steps"], used["cfg"], used["size"]) == (1234, 3, 2.5, "128x128")
    graph = await last_graph(standin)
    sampler = node(graph, "KSampler")
    assert (sampler["seed"], sampler["steps"], sampler["cfg"]) == (1234, 3, 2.5)
    texts = sorted(n["inputs"]["text"] for n in graph.values() if n["class_type"] == "CLIPTextEncode")
    assert texts == ["a fox", "blur"]
    assert node(graph, "EmptyLatentImage")["width"] == 128


async def test_extra_body_object_is_accepted_like_top_level(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "extra_body": {"seed": 7, "steps": 2}})
    assert resp.status == 200
    sampler = node(await last_graph(standin), "KSampler")
    assert (sampler["seed"], sampler["steps"]) == (7, 2)


async def test_model_defaults_come_from_the_catalogue(api: TestClient, standin: ComfyStandIn) -> None:
    resp = await api.post(GEN, json={"prompt": "x", "model": "sd15"})
    used = (await resp.json())["_hal0"]
    assert used["model"] == "sd-1.5-pruned-emaonly"
    assert used["size"] == "512x512" and used["steps"] == 20
    graph = await last_graph(standin)
    assert node(graph, "CheckpointLoaderSimple")["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert node(graph, "KSampler")["sampler_name"] == "euler"


async def test_openai_fields_we_do_not_use_are_accepted(api: TestClient) -> None:
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "quality": "hd", "style": "vivid", "user": "u1"})
    assert resp.status == 200


async def test_random_seed_when_none_is_given(api: TestClient) -> None:
    seeds = set()
    for _ in range(2):
        resp = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
        seeds.add((await resp.json())["_hal0"]["seed"])
    assert len(seeds) == 2


async def test_comfyui_execution_error_is_502_with_comfyuis_text(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.fail_next_prompts = 1
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
    body = await resp.json()
    assert resp.status == 502
    assert body["error"]["code"] == "image.upstream_failed"
    assert standin.settings.fail_message.splitlines()[0][:40] in body["error"]["message"]
    # the next request works
    assert (await api.post(GEN, json={"prompt": "x", "size": "64x64"})).status == 200


async def test_comfyui_validation_error_is_502_with_node_errors(
    aiohttp_client: Any, bridge_config: Any, standin: ComfyStandIn
) -> None:
    standin.settings.checkpoints = ["something_else.safetensors"]
    api = await aiohttp_client(create_app(bridge_config()))
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
    body = await resp.json()
    assert resp.status == 502
    assert body["error"]["code"] == "image.upstream_failed"
    assert "ckpt_name" in body["error"]["message"]
    assert body["error"]["details"]["comfyui"]


async def test_comfyui_plain_text_500_is_502(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.post_prompt_500 = 1
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
    body = await resp.json()
    assert resp.status == 502
    assert "Server got itself in trouble" in body["error"]["message"]


async def test_comfyui_down_is_503_with_retry_after(api: TestClient, standin: ComfyStandIn) -> None:
    await standin.stop()
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
    assert resp.status == 503
    assert resp.headers["Retry-After"].isdigit()
    assert (await resp.json())["error"]["code"] == "image.engine_unavailable"


async def test_silent_websocket_still_completes_through_history(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.ws_silent = True
    await standin.drop_websockets()
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64"})
    assert resp.status == 200, await resp.text()
    assert standin.counters.history_requests >= 1


async def test_public_url_makes_urls_absolute(aiohttp_client: Any, bridge_config: Any) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"public_url": "http://gpu.lan:8080"})))
    body = await (await api.post(GEN, json={"prompt": "x", "size": "64x64"})).json()
    assert body["data"][0]["url"].startswith("http://gpu.lan:8080/api/images/cache/")


async def test_render_timeout_is_504(aiohttp_client: Any, bridge_config: Any, standin: ComfyStandIn) -> None:
    standin.settings.step_seconds = 2.0
    api = await aiohttp_client(create_app(bridge_config(comfyui={"render_timeout": 0.5})))
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "steps": 2})
    assert resp.status == 504
    assert (await resp.json())["error"]["code"] == "image.timeout"
    # the render is interrupted in ComfyUI, not left running for nobody
    for _ in range(100):
        if standin.counters.prompts_interrupted:
            break
        await asyncio.sleep(0.05)
    assert standin.counters.prompts_interrupted == 1


async def test_models_list_is_openai_shaped(api: TestClient) -> None:
    body = await (await api.get("/v1/models")).json()
    assert body["object"] == "list"
    ids = {m["id"] for m in body["data"]}
    assert ids == {"sdxl-turbo", "sd-1.5-pruned-emaonly"}
    assert all(m["object"] == "model" for m in body["data"])


async def test_concurrent_requests_all_complete_without_duplicates(api: TestClient, standin: ComfyStandIn) -> None:
    responses = await asyncio.gather(*(api.post(GEN, json={"prompt": f"p{i}", "size": "64x64"}) for i in range(8)))
    bodies = [await r.json() for r in responses]
    assert all(r.status == 200 for r in responses)
    assert len({b["_hal0"]["prompt_id"] for b in bodies}) == 8
    assert len({b["data"][0]["url"] for b in bodies}) == 8
    assert standin.counters.prompts_accepted == 8
