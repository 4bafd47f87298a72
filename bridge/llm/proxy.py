"""The HTTP pass-through to an LLM slot: the body goes up unchanged, the answer comes back as it arrives.

One pool of kept-alive connections for every slot (:mod:`.http1`: a call costs no TCP handshake, and
far less Python than aiohttp's client), nothing decompressed, so the bytes the client gets are the
bytes the slot sent. A streamed answer
(``text/event-stream``) is handed on chunk by chunk as the socket delivers it: nothing is buffered or
re-framed. Failures, by when they happen:

- no connection (refused, unreachable, closed before an answer): :class:`UpstreamUnreachable` — the
  caller may wait for the slot and try once more;
- an error answer: kept as is (status and body) when it is OpenAI-shaped (``{"error": {"message"...}}``,
  what llama.cpp and every OpenAI-compatible server send), so clients see the slot's own reason; any
  other error answer is 502 ``llm.upstream_failed`` with the slot's status and the start of its body;
- the slot goes away mid-stream (stopped, crashed): one last SSE event ``data: {"error": {...}}`` in
  our envelope, which the ``openai`` client raises as an ``APIError``, then the stream ends.

The caller's cancellation (the client hung up) closes the upstream connection at once, which is how
llama.cpp learns to stop generating.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..errors import ApiError
from .call import LlmCall
from .http1 import Answer, NotAnswered, Pool, UpstreamError

ERROR_EXCERPT = 500  # characters of a non-OpenAI error body kept in details
# llama.cpp's server closes an idle keep-alive connection after 5 s; close ours first, so a call never
# goes out on a connection the slot is about to drop
KEEPALIVE_SECONDS = 4.0
PASSED_REQUEST_HEADERS = ("Content-Type", "Accept")
PASSED_REPLY_HEADERS = ("Content-Type", "Content-Encoding")  # as the client sees them; read in lower case
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class UpstreamUnreachable(Exception):
    """No connection to the slot: the request was not sent."""


@dataclass(slots=True)
class Reply:
    """The slot's answer: ``body`` when it was read whole, ``chunks`` when it streams."""

    status: int
    headers: dict[str, str]
    body: bytes | None = None
    chunks: ChunkStream | None = None


class ChunkStream:
    """The streamed answer, chunk by chunk as received; a failure mid-stream becomes one SSE error event."""

    def __init__(self, answer: Answer, slot: str) -> None:
        self._answer = answer
        self._slot = slot
        self._done = False

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await self._answer.read_chunk()
        except (UpstreamError, ConnectionError) as err:
            self._done = True
            failure = ApiError(
                errors.LLM_UPSTREAM_FAILED,
                f"LLM slot {self._slot} stopped answering mid-stream: {err or type(err).__name__}",
                details={"slot": self._slot},
            )
            return b"data: " + json.dumps(failure.envelope(), separators=(",", ":")).encode() + b"\n\n"
        if not chunk:
            raise StopAsyncIteration
        return chunk


def is_openai_error(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict) and "message" in data["error"]


def media_type(headers: dict[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


class Upstream:
    """The proxy's client side: one connection pool for all LLM slots."""

    def __init__(self, connect_timeout: float) -> None:
        self._pool = Pool(connect_timeout, KEEPALIVE_SECONDS)

    async def start(self) -> None:
        """Nothing to open: connections are made on the first call to each slot."""

    async def close(self) -> None:
        self._pool.close()

    async def get_json(self, url: str, headers: dict[str, str], timeout: float) -> tuple[int, Any]:
        """A small GET (a slot's ``/v1/models``): status and parsed JSON (None when not JSON).
        Raises :class:`UpstreamError`, ``TimeoutError`` or ``OSError`` when the slot does not answer."""
        async with asyncio.timeout(timeout):
            answer = await self._pool.request("GET", url, headers.items())
            try:
                body = await answer.read()
            finally:
                answer.release()
        try:
            return answer.status, json.loads(body)
        except ValueError:
            return answer.status, None

    @asynccontextmanager
    async def call(
        self, slot: str, url: str, call: LlmCall, client_headers: Mapping[str, str], slot_headers: dict[str, str]
    ) -> AsyncIterator[Reply]:
        """POST ``call`` to the slot at ``url``; yields its :class:`Reply` (see the module for failures)."""
        headers = {k: v for k in PASSED_REQUEST_HEADERS if (v := client_headers.get(k))}
        headers.setdefault("Content-Type", "application/json")
        headers.update(slot_headers)
        try:
            # llama.cpp's server closes the connection after a stream without saying so (no
            # "Connection: close"; measured: the next request on it met "Server disconnected" every
            # time), so a stream gets a connection of its own that never goes back to the pool
            answer = await self._pool.request("POST", url + call.endpoint, headers.items(), call.body, close=call.stream)
        except NotAnswered as err:
            # refused, or a kept-alive connection the slot closed before reading: nothing was answered
            raise UpstreamUnreachable(str(err)) from err
        except (UpstreamError, OSError, TimeoutError) as err:
            raise ApiError(
                errors.LLM_UPSTREAM_FAILED,
                f"LLM slot {slot} did not answer: {err or type(err).__name__}",
                details={"slot": slot},
            ) from err
        try:
            reply = await self._reply(answer, slot)
        except BaseException:
            answer.close()
            raise
        try:
            yield reply
        except BaseException:
            answer.close()  # not fully read (client gone, an error): drop the connection, the slot stops
            raise
        else:
            answer.release()

    @staticmethod
    async def _reply(answer: Answer, slot: str) -> Reply:
        headers = {k: v for k in PASSED_REPLY_HEADERS if (v := answer.headers.get(k.lower()))}
        headers["X-Hal0-Slot"] = slot
        if media_type(answer.headers) == "text/event-stream" and answer.status < 400:
            return Reply(answer.status, headers | SSE_HEADERS, chunks=ChunkStream(answer, slot))
        try:
            body = await answer.read()
        except (UpstreamError, ConnectionError) as err:
            raise ApiError(
                errors.LLM_UPSTREAM_FAILED,
                f"LLM slot {slot} broke off its answer: {err or type(err).__name__}",
                details={"slot": slot},
            ) from err
        if answer.status >= 400 and not is_openai_error(body):
            raise ApiError(
                errors.LLM_UPSTREAM_FAILED,
                f"LLM slot {slot} answered {answer.status}",
                details={"slot": slot, "status": answer.status, "body": body[:ERROR_EXCERPT].decode(errors="replace")},
            )
        return Reply(answer.status, headers, body=body)
