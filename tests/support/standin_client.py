"""Client-side helpers for tests that drive the ComfyUI stand-in as ComfyUI's own clients do.

Shared by the stand-in tests (uploads, previews, faults): read websocket messages (binary frames
decoded the way tests/captures/README.md describes them), submit prompts, compare sequences with
the recordings without ids and timestamps.
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.comfyui_standin import ComfyStandIn

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
RECEIVE_TIMEOUT = 10.0  # safety net only: no test asserts on timing
CLIENT = "ca0b3fb88f42417d97e3cf2770d72575"

Message = dict[str, Any]  # one websocket message, or a decoded binary frame


def capture(name: str) -> Any:
    text = (CAPTURES / name).read_text()
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def example_body(client_id: str | None = CLIENT, **inputs: Any) -> dict[str, Any]:
    """prompt_request_example.json with literal inputs overridden wherever a node has them."""
    body: dict[str, Any] = copy.deepcopy(capture("prompt_request_example.json"))
    for name, value in inputs.items():
        for node in body["prompt"].values():
            if name in node["inputs"] and not isinstance(node["inputs"][name], list):
                node["inputs"][name] = value
    if client_id is None:
        body.pop("client_id")
    else:
        body["client_id"] = client_id
    return body


def decode_frame(raw: bytes) -> Message:
    """A binary ws frame described like the captures do (event_type, image_type or metadata, image)."""
    (event,) = struct.unpack(">I", raw[:4])
    frame: dict[str, Any] = {"binary": True, "event_type": event, "bytes": len(raw)}
    if event == 1:
        frame["image_type"] = struct.unpack(">I", raw[4:8])[0]
        frame["image"] = raw[8:]
    else:
        (length,) = struct.unpack(">I", raw[4:8])
        frame["metadata_length"] = length
        frame["metadata"] = json.loads(raw[8 : 8 + length])
        frame["image"] = raw[8 + length :]
    frame["payload_magic"] = frame["image"][:4].hex()
    return frame


def summary(messages: list[Message]) -> list[tuple[Any, ...]]:
    """What a message sequence says, without ids, timestamps, file names and image bytes."""
    out: list[tuple[Any, ...]] = []
    for message in messages:
        if message.get("binary"):
            out.append(("binary", message["event_type"], message.get("image_type") or message["metadata"]["image_type"]))
            continue
        kind, data = message["type"], message["data"]
        if kind == "status":
            out.append((kind, data["status"]["exec_info"]["queue_remaining"]))
        elif kind == "executing":
            out.append((kind, data["node"]))
        elif kind == "executed":
            out.append((kind, data["node"], tuple(sorted(data["output"] or {}))))
        elif kind == "execution_cached":
            out.append((kind, tuple(data["nodes"])))
        elif kind == "progress":
            out.append((kind, data["node"], data["value"], data["max"]))
        elif kind == "progress_state":
            out.append((kind, tuple((k, v["state"], v["value"], v["max"]) for k, v in data["nodes"].items())))
        elif kind in ("execution_error", "execution_interrupted"):
            out.append((kind, data["node_id"], data["node_type"], tuple(data["executed"])))
        else:
            out.append((kind,))
    return out


def kinds(messages: list[Message]) -> list[str]:
    return ["binary" if m.get("binary") else m["type"] for m in messages]


async def receive(ws: aiohttp.ClientWebSocketResponse, timeout: float = RECEIVE_TIMEOUT) -> Message | None:
    """The next message as a dict (binary frames decoded); None once the socket closed."""
    msg = await ws.receive(timeout=timeout)
    if msg.type == aiohttp.WSMsgType.TEXT:
        message: Message = json.loads(msg.data)
        return message
    if msg.type == aiohttp.WSMsgType.BINARY:
        return decode_frame(msg.data)
    return None


async def read_until(ws: aiohttp.ClientWebSocketResponse, done: Callable[[Message], bool]) -> list[Message]:
    """Messages up to and including the first one for which ``done(message)`` is true."""
    messages: list[Message] = []
    while True:
        message = await receive(ws)
        assert message is not None, f"socket closed after {summary(messages)}"
        messages.append(message)
        if done(message):
            return messages


async def read_to_close(ws: aiohttp.ClientWebSocketResponse) -> list[Message]:
    """Every message until the server closes the socket."""
    messages: list[Message] = []
    while (message := await receive(ws)) is not None:
        messages.append(message)
    return messages


def is_end(message: Message) -> bool:
    """``executing {node: null}``: always the last message of a prompt (README)."""
    return message.get("type") == "executing" and message["data"]["node"] is None


async def connect(session: aiohttp.ClientSession, comfy: ComfyStandIn, client_id: str | None = CLIENT, *, metadata: bool = False) -> aiohttp.ClientWebSocketResponse:
    """A socket whose first (status) message has been read; ``metadata`` sends feature_flags first."""
    ws = await session.ws_connect(comfy.ws_url(client_id))
    first = await receive(ws)
    assert first is not None and first["type"] == "status"
    if metadata:
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        answer = await receive(ws)
        assert answer is not None and answer["type"] == "feature_flags"
    return ws


async def submit(session: aiohttp.ClientSession, comfy: ComfyStandIn, body: dict[str, Any]) -> str:
    async with session.post(f"{comfy.url}/prompt", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["prompt_id"])


async def run(session: aiohttp.ClientSession, comfy: ComfyStandIn, ws: aiohttp.ClientWebSocketResponse, body: dict[str, Any]) -> tuple[str, list[Message]]:
    """Submit and read the prompt's messages up to ``executing {node: null}``."""
    prompt_id = await submit(session, comfy, body)
    return prompt_id, await read_until(ws, is_end)


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def history_entry(session: aiohttp.ClientSession, comfy: ComfyStandIn, prompt_id: str) -> dict[str, Any]:
    entry = (await get_json(session, f"{comfy.url}/history/{prompt_id}")).get(prompt_id)
    assert entry is not None, f"no history for {prompt_id}"
    return dict(entry)


def upload_form(data: bytes, filename: str = "red.png", **fields: str) -> aiohttp.FormData:
    """A multipart body like the frontend's: the file as ``image``, then the other fields."""
    form = aiohttp.FormData()
    form.add_field("image", data, filename=filename, content_type="image/png")
    for name, value in fields.items():
        form.add_field(name, value)
    return form
