"""The LLM proxy's own HTTP/1.1 client (bridge/llm/http1.py) against scripted servers on real sockets.

llama-server is the slot these tests cannot bend (tests/daemon/llm/test_proxy.py drives the client
through it); here a plain asyncio server answers exactly the bytes each test needs: a body that runs
to EOF, an interim 100, a kept-alive connection the server drops, garbage, a large body.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from hal0_bridge.llm.http1 import (
    HIGH_WATER,
    JOIN_BELOW,
    NotAnswered,
    Origin,
    Pool,
    UpstreamError,
    encode_head,
    split_url,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A scripted HTTP server: ``handler`` runs once per connection; requests are recorded."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> bytes:
        """One request's head and body (by its Content-Length); b"" when the client closed."""
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
        raw = head + await reader.readexactly(length)
        self.requests.append(raw)
        return raw


@asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        for writer in server.writers:  # connections the client keeps alive: wait_closed waits for them
            writer.close()
        await listener.wait_closed()


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), b"".join(h + b"\r\n" for h in extra), body)  # fmt: skip


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    p = Pool(connect_timeout=2.0, keepalive=4.0)
    yield p
    p.close()


async def get(pool: Pool, url: str, body: bytes = b"", **kw: bool) -> tuple[int, dict[str, str], bytes]:
    ans = await pool.request("POST" if body else "GET", url, [("Content-Type", "application/json")], body, **kw)
    data = await ans.read()
    ans.release()
    return ans.status, ans.headers, data


async def test_kept_alive_calls_share_one_connection_and_send_host_and_length(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server.request(reader)
            writer.write(answer(b'{"n":%d}' % len(server.requests)))

    async with scripted(handler) as (server, url):
        for n in (1, 2, 3):
            status, headers, body = await get(pool, url + "/v1/chat/completions", b'{"model":"m"}')
            assert (status, body, headers["content-type"]) == (200, b'{"n":%d}' % n, "application/json")
        assert server.connections == 1
        first = server.requests[0]
        assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
        assert f"Host: {url.removeprefix('http://')}".encode() in first and b"Content-Length: 13\r\n" in first
        assert first.endswith(b'\r\n\r\n{"model":"m"}')


async def test_connection_close_from_the_server_means_a_new_connection_next_time(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(answer(b"{}", b"Connection: close"))
        await writer.drain()

    async with scripted(handler) as (server, url):
        for _ in range(3):
            assert (await get(pool, url + "/x", b"{}"))[0] == 200
        assert server.connections == 3


async def test_a_request_that_asks_for_close_never_goes_back_to_the_pool(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.request(reader):
            writer.write(answer(b"{}"))  # the server would keep it; the client said close

    async with scripted(handler) as (server, url):
        await get(pool, url + "/x", b"{}", close=True)
        await get(pool, url + "/x", b"{}", close=True)
        assert server.connections == 2
        assert b"Connection: close\r\n" in server.requests[0]


async def test_an_idle_connection_the_server_dropped_is_not_reused(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(answer(b"{}"))  # says nothing about closing, then closes (keep-alive timeout)
        await writer.drain()

    async with scripted(handler) as (server, url):
        await get(pool, url + "/x", b"{}")
        await asyncio.sleep(0.05)  # the FIN arrives while the connection idles in the pool
        assert (await get(pool, url + "/x", b"{}"))[0] == 200
        assert server.connections == 2


async def test_a_body_without_length_runs_to_the_end_of_the_connection(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"part two")
        await writer.drain()

    async with scripted(handler) as (server, url):
        status, _, body = await get(pool, url + "/x", b"{}")
        assert (status, body) == (200, b"part one, part two")


async def test_a_body_without_length_cut_by_a_reset_is_an_error_not_its_end(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.02)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
        writer.transport.abort()

    async with scripted(handler) as (server, url):
        ans = await pool.request("POST", url + "/x", [], b"{}")
        with pytest.raises(UpstreamError) as info:
            await ans.read()
        assert not isinstance(info.value, NotAnswered)
        ans.close()


async def test_a_large_request_body_arrives_whole(pool: Pool) -> None:
    blob = bytes(range(256)) * (4 * JOIN_BELOW // 256)  # sent beside the head, not joined to it

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = await server.request(reader)
        writer.write(answer(b"%d" % len(raw.partition(b"\r\n\r\n")[2])))

    async with scripted(handler) as (server, url):
        assert (await get(pool, url + "/x", blob))[2] == str(len(blob)).encode()
        assert server.requests[0].endswith(blob)


async def test_chunked_bodies_arrive_piece_by_piece_without_the_chunk_framing(pool: Pool) -> None:
    go_on = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"7\r\ndata: 1\r\n")  # fmt: skip
        await go_on.wait()
        writer.write(b"7\r\ndata: 2\r\n0\r\n\r\n")
        await writer.drain()

    async with scripted(handler) as (server, url):
        ans = await pool.request("POST", url + "/x", [], b"{}")
        assert await ans.read_chunk() == b"data: 1"  # the first piece comes before the server goes on
        go_on.set()
        assert await ans.read_chunk() == b"data: 2"
        assert await ans.read_chunk() == b""
        ans.release()


async def test_an_interim_100_is_skipped(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b'{"ok":1}'))

    async with scripted(handler) as (server, url):
        assert (await get(pool, url + "/x", b"{}"))[::2] == (200, b'{"ok":1}')


async def test_a_large_body_is_read_whole_while_reading_pauses_and_resumes(pool: Pool) -> None:
    blob = bytes(range(256)) * (4 * HIGH_WATER // 256)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)
        writer.write(answer(blob))
        await writer.drain()

    async with scripted(handler) as (server, url):
        ans = await pool.request("GET", url + "/big", [])
        await asyncio.sleep(0.2)  # nobody reads: the client stops reading the socket at HIGH_WATER
        assert ans._buffered <= HIGH_WATER + 256 * 1024  # noqa: SLF001 - one socket read past the mark at most
        assert await ans.read() == blob
        ans.release()


async def test_closed_before_any_answer_is_not_answered(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.request(reader)  # read it, then hang up without a byte

    async with scripted(handler) as (server, url):
        with pytest.raises(NotAnswered):
            await get(pool, url + "/x", b"{}")


async def test_refused_is_not_answered(pool: Pool) -> None:
    async with scripted(lambda r, w: asyncio.sleep(0)) as (_, url):
        pass  # the port is free again: nothing listens
    with pytest.raises(NotAnswered, match="cannot connect"):
        await get(pool, url + "/x", b"{}")


async def test_broken_off_mid_body_and_garbage_are_upstream_errors_not_not_answered(pool: Pool) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = await server.request(reader)
        if raw.startswith(b"POST /cut"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        else:
            writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()

    async with scripted(handler) as (server, url):
        with pytest.raises(UpstreamError) as cut:
            await get(pool, url + "/cut", b"{}")
        assert not isinstance(cut.value, NotAnswered)
        with pytest.raises(UpstreamError, match="not HTTP"):
            await get(pool, url + "/ssh", b"{}")


def test_the_request_head_refuses_line_breaks_and_names_the_host() -> None:
    origin, target = split_url("http://[::1]:8081/base/v1/models?x=1")
    assert (origin, target) == (Origin("::1", 8081, False), "/base/v1/models?x=1")
    head = encode_head("GET", target, origin, [("Accept", "*/*")], 0)
    assert head == b"GET /base/v1/models?x=1 HTTP/1.1\r\nHost: [::1]:8081\r\nContent-Length: 0\r\nAccept: */*\r\n\r\n"
    assert split_url("https://slot.lan/v1")[0].host_header == "slot.lan"
    with pytest.raises(ValueError, match="line break"):
        encode_head("GET", "/", origin, [("X-A", "1\r\nX-B: 2")], 0)
    with pytest.raises(ValueError, match="not an http"):
        split_url("unix:///run/llama.sock")
