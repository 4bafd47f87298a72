"""HTTP/1.1 to the LLM slots, lean: kept-alive connections, answers parsed by llhttp as they arrive.

The one client on the LLM proxy's hot path. aiohttp's client, which the bridge uses for ComfyUI, spends
about 0.35 ms of Python per call on request and response objects, tracing hooks, the cookie jar and
per-request timeouts (measured against a plain asyncio connection to the same llama-server), and the
proxy may add less than 1 ms in all (issue 12, docs/benchmarks.md). A call to a slot needs far less:
the request goes out in one write, llhttp (through ``httptools``, the parser uvicorn uses) parses the
answer as the socket delivers it, the body is handed on chunk by chunk (chunked transfer coding
removed, nothing else touched), and the connection is kept for the next call when both sides allow it.

Left out, because slots do not need it: redirects, cookies, proxies, ``Expect: 100-continue``,
decompression (bytes go on as the slot sent them, with their ``Content-Encoding``).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import httptools
from yarl import URL

HIGH_WATER = 256 * 1024  # bytes of an unread answer held before the slot's socket is paused
JOIN_BELOW = 16 * 1024  # a smaller body goes out joined to the head (one send); a larger one uncopied
FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


class UpstreamError(Exception):
    """The connection broke mid-answer, or what came back is not HTTP."""


class NotAnswered(UpstreamError):
    """No answer at all: no connection, or it closed before the first byte of an answer. The slot did
    not take the request, so sending it once more is safe."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: one pool of kept-alive connections per origin."""

    host: str
    port: int
    tls: bool

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@functools.lru_cache(maxsize=256)
def split_url(url: str) -> tuple[Origin, str]:
    """``url``'s origin and request target (path and query); a few slot URLs, so parsed once each."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.port is None:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return Origin(parsed.host, parsed.port, parsed.scheme == "https"), parsed.raw_path_qs or "/"


def encode_head(method: str, target: str, origin: Origin, headers: Iterable[tuple[str, str]], length: int) -> bytes:
    """The request line and headers. A line break in a name or value would split the request in two;
    none can come from aiohttp's parser or the checked config, so one here is a bug, not input."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host_header}", f"Content-Length: {length}"]
    for name, value in headers:
        if any(c in name or c in value for c in FORBIDDEN_IN_HEADERS):
            raise ValueError(f"header {name!r} holds a line break or NUL")
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode()


class Answer:
    """One answer: ``status`` and ``headers`` (names in lower case) once they came, then the body."""

    def __init__(self, conn: Connection, reusable: bool) -> None:
        self._conn = conn
        self._loop = asyncio.get_running_loop()
        self._reusable = reusable  # False when the request said "Connection: close"
        self._started: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._interim = False
        self._framed = False  # the body has a length or is chunked: the end is in the stream, not at EOF
        self.got_bytes = False  # set by the connection on the first byte of an answer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.done = False
        self._keep_alive = False
        self._error: UpstreamError | None = None
        self._finished = False

    # ------------------------------------------------------------------------------ the reader's side

    async def started(self) -> None:
        """Wait for the status line and headers."""
        await self._started

    async def read_chunk(self) -> bytes:
        """The next piece of the body as it arrived; ``b""`` at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self.done:
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered < HIGH_WATER // 2:
            self._paused = False
            self._conn.resume()
        return chunk

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def release(self) -> None:
        """Done with the answer: the connection goes back to its pool when the answer was read to its
        end and both sides keep it alive, else it is closed."""
        self._finish(self.done and self._error is None and self._keep_alive and self._reusable)

    def close(self) -> None:
        """Drop the connection (the answer was not read to its end): the slot sees the client go."""
        self._finish(False)

    def _finish(self, keep: bool) -> None:
        if not self._finished:  # once: after that, the connection may be carrying another call
            self._finished = True
            self._conn.finish(keep)

    # ------------------------------------------------------------------------------ the parser's side

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self, status: int) -> None:
        if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._interim = True
            self._raw_headers.clear()
            return
        self.status = status
        self.headers = {n.decode("latin-1").lower(): v.decode("latin-1") for n, v in self._raw_headers}
        self._framed = "content-length" in self.headers or "transfer-encoding" in self.headers
        if not self._started.done():
            self._started.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause()
        self._wake()

    def on_message_complete(self, keep_alive: bool) -> None:
        if self._interim:
            self._interim = False
            return
        self.done = True
        self._keep_alive = keep_alive
        self._wake()

    def fail(self, error: UpstreamError) -> None:
        if self.done:
            return
        if not self._started.done():
            self._started.set_exception(error)
            self._started.exception()  # read: nobody else may be waiting any more
        self._error = error
        self._wake()

    def lost(self, exc: Exception | None) -> None:
        """The connection closed (``exc``: broken, not closed cleanly): the end of a body that runs to
        EOF, else a failure."""
        if self.done:
            return
        if self._started.done() and not self._framed and exc is None:
            self.done = True  # neither a length nor chunked: the body ends where the connection does
            self._wake()
            return
        reason = str(exc) if exc else "the slot closed the connection"
        self.fail(UpstreamError(reason) if self.got_bytes else NotAnswered(reason))

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Connection(asyncio.Protocol):
    """One kept-alive connection to a slot; carries one answer at a time."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self._pool = pool
        self.origin = origin
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: Answer | None = None
        self.closed = False
        self.idle_since = 0.0

    def send(self, head: bytes, body: bytes, reusable: bool) -> Answer:
        assert self._transport is not None and self._answer is None
        self._answer = Answer(self, reusable)
        if len(body) < JOIN_BELOW:
            self._transport.write(head + body)
        else:
            self._transport.writelines((head, body))
        return self._answer

    def finish(self, keep: bool) -> None:
        self._answer = None
        if keep and not self.closed:
            self._pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def pause(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    # ------------------------------------------------------------------------------ asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport: create_connection makes nothing else (uvloop's does not subclass asyncio's)
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done:  # bytes nobody asked for: the connection is not to be trusted
            self.close()
            return
        answer.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            answer.fail(UpstreamError(f"the slot's answer is not HTTP/1.1: {err}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._answer is not None:
            self._answer.lost(exc)

    # ------------------------------------------------------------------------------ llhttp's callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._answer is not None:
            self._answer.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._answer is not None:
            self._answer.on_headers_complete(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        if self._answer is not None:
            self._answer.on_body(body)

    def on_message_complete(self) -> None:
        if self._answer is not None:
            self._answer.on_message_complete(self._parser.should_keep_alive())


class Pool:
    """Connections to every slot, kept alive for ``keepalive`` seconds between calls."""

    def __init__(self, connect_timeout: float, keepalive: float) -> None:
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._idle: dict[Origin, list[Connection]] = {}
        self._open: set[Connection] = set()
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def request(
        self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes = b"", *, close: bool = False
    ) -> Answer:
        """Send one request; the :class:`Answer` once its headers came (its body may still be coming).
        ``close``: the connection is not kept afterwards (``Connection: close`` is sent)."""
        origin, target = split_url(url)
        if close:
            headers = [*headers, ("Connection", "close")]
        head = encode_head(method, target, origin, headers, len(body))
        conn = self._take(origin) or await self._connect(origin)
        answer = conn.send(head, body, reusable=not close)
        try:
            await answer.started()
        except BaseException:
            answer.close()
            raise
        return answer

    def put(self, conn: Connection) -> None:
        if self._closed:  # an answer released after shutdown: nobody will take its connection
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle.setdefault(conn.origin, []).append(conn)

    def forget(self, conn: Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.origin)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    def _take(self, origin: Origin) -> Connection | None:
        """The most recently used idle connection that is still open and young enough."""
        idle = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn.close()
        return None

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.tls:
            if self._tls is None:  # reads the system's CA files: off the loop, once
                self._tls = await asyncio.to_thread(ssl.create_default_context)
            tls = self._tls
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: Connection(self, origin), origin.host, origin.port, ssl=tls,
                    server_hostname=origin.host if tls else None,
                )  # fmt: skip
        except TimeoutError:
            raise TimeoutError(f"no connection to {origin.host}:{origin.port} within {self._connect_timeout:g} s") from None
        except OSError as err:
            raise NotAnswered(f"cannot connect to {origin.host}:{origin.port}: {err.strerror or err}") from err
        self._open.add(conn)
        return conn
