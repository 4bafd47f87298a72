"""The LLM pass-through with a real llama-server behind the bridge, driven by the official ``openai`` client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from tests.daemon.llm.conftest import CHAT, MODEL, RigFactory

LONG = 1500  # tokens: ~0.5-3 s on this machine with -c 4096, long enough to be seen in flight


async def test_models_lists_the_slots_model_and_the_image_models_each_with_its_kind(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    models = (await (await rig.api.get("/v1/models")).json())["data"]

    llm = [m for m in models if m["kind"] == "llm"]
    assert [(m["id"], m["slot"], m["owned_by"]) for m in llm] == [(MODEL, "chat", "llamacpp")]
    images = [m for m in models if m["kind"] == "image"]
    assert {"sdxl-turbo", "sd-1.5-pruned-emaonly"} <= {m["id"] for m in images}
    assert all("size" in m and "steps" in m for m in images)  # the image fields are still there
    listed = [m.id for m in (await rig.openai.models.list()).data]
    assert listed[0] == MODEL


async def test_declared_models_are_what_the_slot_is_routed_by(llm_rig: RigFactory) -> None:
    rig = await llm_rig(slot={"models": ["qwen-local", "qwen"]})
    ids = [m["id"] for m in (await (await rig.api.get("/v1/models")).json())["data"] if m["kind"] == "llm"]
    assert ids == ["qwen-local", "qwen"]

    answer = await rig.openai.chat.completions.create(model="qwen", messages=CHAT["messages"], max_tokens=3)
    assert answer.choices[0].finish_reason == "length"
    with pytest.raises(openai.NotFoundError):
        await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=3)


async def test_plain_chat_answers_what_llama_server_says(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    answer = await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=8)

    assert answer.object == "chat.completion"
    assert answer.model == MODEL
    assert answer.usage is not None and answer.usage.completion_tokens == 8
    assert answer.choices[0].message.content


async def test_the_body_reaches_the_slot_unchanged_and_the_answer_comes_back_unchanged(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    body = json.dumps({**CHAT, "seed": 7, "temperature": 0, "n_probs": 2, "cache_prompt": False}).encode()
    async with aiohttp.ClientSession() as session:
        async with session.post(rig.llama_url + "/v1/chat/completions", data=body) as resp:
            direct = await resp.json()
    via = await rig.api.post("/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    proxied = await via.json()

    assert via.status == 200 and via.headers["X-Hal0-Slot"] == "chat"
    for answer in (direct, proxied):  # ids and timings differ per call; the rest is llama-server's own
        for key in ("id", "created", "timings"):
            answer.pop(key)
    assert proxied == direct  # same seed, temperature 0: the fields the bridge does not read arrived too


async def test_no_model_with_one_llm_slot_goes_to_that_slot(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    resp = await rig.api.post("/v1/chat/completions", json={"messages": CHAT["messages"], "max_tokens": 2})
    assert resp.status == 200
    assert (await resp.json())["usage"]["completion_tokens"] == 2


async def test_an_unknown_model_is_404_with_the_list(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    with pytest.raises(openai.NotFoundError) as info:
        await rig.openai.chat.completions.create(model="gpt-4o", messages=CHAT["messages"])
    assert info.value.code == "llm.model_not_found"
    assert info.value.body["details"] == {"model": "gpt-4o", "available": [MODEL]}  # type: ignore[index]
    assert "tiny" in info.value.message


async def test_streaming_chat_passes_every_chunk(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    stream = await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=12, stream=True)
    chunks = [chunk async for chunk in stream]

    assert chunks[0].choices[0].delta.role == "assistant"
    tokens = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(tokens) == 12
    assert chunks[-1].choices[0].finish_reason == "length"


async def test_a_stream_arrives_chunk_by_chunk_not_buffered(llm_rig: RigFactory) -> None:
    """Many separate reads with time between them: the bridge writes each chunk as it comes."""
    rig = await llm_rig(ctx=4096)
    arrivals: list[float] = []
    loop = asyncio.get_running_loop()
    async with rig.api.post("/v1/chat/completions", json={**CHAT, "max_tokens": 400, "stream": True}) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-Accel-Buffering"] == "no"
        async for _line in resp.content:
            arrivals.append(loop.time())
    events = len(arrivals)
    assert events >= 400  # one data line (plus blank line) per token
    spread = arrivals[-1] - arrivals[0]
    assert spread > 0  # not one burst at the end
    assert sum(1 for a in arrivals if a < arrivals[0] + spread / 2) > 20


async def test_completions_and_embeddings(llm_rig: RigFactory) -> None:
    rig = await llm_rig(embeddings=True)
    completion = await rig.openai.completions.create(model=MODEL, prompt="Once upon", max_tokens=4)
    assert completion.choices[0].finish_reason == "length"

    embedding = await rig.openai.embeddings.create(model=MODEL, input=["hello", "world"])
    assert [len(e.embedding) for e in embedding.data] == [64, 64]


async def test_an_openai_shaped_error_keeps_the_slots_status_and_body(llm_rig: RigFactory) -> None:
    rig = await llm_rig()  # no --embeddings: llama-server answers 501 not_supported_error
    resp = await rig.api.post("/v1/embeddings", json={"model": MODEL, "input": "x"})
    body = await resp.json()
    assert resp.status == 501
    assert body["error"]["type"] == "not_supported_error"

    bad = await rig.api.post("/v1/chat/completions", json={"model": MODEL, "messages": "not a list"})
    assert bad.status == 400
    assert "messages" in (await bad.json())["error"]["message"]


async def test_a_client_that_hangs_up_mid_stream_stops_the_generation(llm_rig: RigFactory) -> None:
    rig = await llm_rig(ctx=4096)
    stream = await rig.openai.chat.completions.create(
        model=MODEL, messages=CHAT["messages"], max_tokens=LONG, stream=True
    )
    got = 0
    async for chunk in stream:
        got += 1
        if got == 5:
            break
    assert await rig.slots_busy() == 1  # still generating
    assert rig.bridge.llm is not None
    await stream.close()  # hang up

    loop = asyncio.get_running_loop()
    hung_up = loop.time()
    while await rig.slots_busy():
        assert loop.time() - hung_up < 2.0, "llama-server still generating after the client left"
        await asyncio.sleep(0.02)
    await rig.until(lambda: rig.status()["llm"]["in_flight"] == 0, "in_flight back to 0")


async def test_a_bad_body_is_refused_before_any_routing(llm_rig: RigFactory) -> None:
    rig = await llm_rig()
    cases: list[tuple[Any, int, str]] = [
        (b"{", 400, "request.invalid_json"),
        (b"[1]", 422, "request.body_not_object"),
        (json.dumps({"model": 3}).encode(), 422, "llm.invalid_request"),
        (json.dumps({"model": MODEL, "stream": "yes"}).encode(), 422, "llm.invalid_request"),
    ]
    for raw, status, code in cases:
        resp = await rig.api.post("/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"})
        assert (resp.status, (await resp.json())["error"]["code"]) == (status, code), raw


async def test_a_body_over_llm_max_body_bytes_is_413(llm_rig: RigFactory) -> None:
    rig = await llm_rig(llm={"max_body_bytes": 4096})
    resp = await rig.api.post("/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]})
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "request.body_too_large"
    # bigger than the API's own 256 KiB limit is fine for an LLM call under the default
    big = await llm_rig()
    long_history = [{"role": "user", "content": "y" * 1000}] * 300
    resp = await big.api.post("/v1/chat/completions", json={"model": MODEL, "messages": long_history, "max_tokens": 1})
    assert resp.status != 413


async def test_requests_in_flight_show_in_status(llm_rig: RigFactory) -> None:
    rig = await llm_rig(ctx=4096)
    sub = rig.watch()
    task = asyncio.ensure_future(rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=LONG))
    await rig.until(lambda: rig.status()["llm"]["in_flight"] == 1, "in_flight 1")
    assert rig.status()["llm"]["models"] == [MODEL]
    await task
    await rig.until(lambda: rig.status()["llm"]["in_flight"] == 0, "in_flight 0")
    sub.close()


async def test_a_slot_with_an_api_key_is_reached_with_the_slots_headers(llm_rig: RigFactory) -> None:
    rig = await llm_rig(llama_args=["--api-key", "slot-secret"], slot={"headers": {"Authorization": "Bearer slot-secret"}})
    # the model list was read with the key (llama-server answers 401 without it)
    assert [m.id for m in (await rig.openai.models.list()).data][0] == MODEL
    answer = await rig.openai.chat.completions.create(model=MODEL, messages=CHAT["messages"], max_tokens=2)
    assert answer.choices[0].finish_reason == "length"


async def test_llm_answers_match_the_openapi_document(llm_rig: RigFactory) -> None:
    from tests.daemon.http.test_openapi import check_answer, fetch_doc

    rig = await llm_rig()
    doc = await fetch_doc(rig.api)
    path = "/v1/chat/completions"
    ok = await rig.api.post(path, json=CHAT)
    check_answer(doc, "POST", path, ok.status, await ok.json(), ok.content_type)
    async with rig.api.post(path, json={**CHAT, "stream": True}) as stream:
        check_answer(doc, "POST", path, stream.status, None, stream.content_type)
        await stream.read()
    for body, status in (({**CHAT, "model": "nope"}, 404), ({"model": 1}, 422), ([], 422)):
        resp = await rig.api.post(path, json=body)
        assert resp.status == status
        check_answer(doc, "POST", path, status, await resp.json(), resp.content_type)
    models = await rig.api.get("/v1/models")
    check_answer(doc, "GET", "/v1/models", 200, await models.json(), models.content_type)
    await rig.switch("generation", pin=True)
    pinned = await rig.api.post(path, json=CHAT)
    check_answer(doc, "POST", path, 503, await pinned.json(), pinned.content_type)
    status = await rig.api.get("/api/comfyui/status")
    check_answer(doc, "GET", "/api/comfyui/status", 200, await status.json(), status.content_type)


async def test_streams_and_plain_calls_mixed_never_meet_a_closed_connection(
    llm_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """llama-server closes a connection after a stream without saying so; the bridge must not reuse it."""
    rig = await llm_rig()
    caplog.set_level("INFO", logger="hal0_bridge.llm.service")

    async def one(i: int) -> int:
        resp = await rig.api.post("/v1/chat/completions", json={**CHAT, "max_tokens": 2, "stream": i % 2 == 0})
        await resp.read()
        return resp.status

    statuses = [await one(i) for i in range(60)]
    statuses += await asyncio.gather(*(one(i) for i in range(30)))

    assert statuses == [200] * 90
    assert "no answer on the connection" not in caplog.text
