"""The entry never freezes: whatever ends the event stream, polling takes over and the stream is
retried with backoff.

A real bridge sits behind a small front that passes every request through, except ``/api/events``,
which answers with garbage: a line too long for the client, bytes that are not text, a status event
whose fields have the wrong types, an image URL that is not a URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.hal0.const import POLL_INTERVAL

from .conftest import RunningBridge, free_port, setup_entry, wait_until

# nothing in a bridge without slots sets idle_restore_at, so a value the test sets stays
IDLE_RESTORE = "sensor.hal0_testnode_idle_restore"
WHEN = 1_900_000_000.0

GARBAGE = {
    # longer than aiohttp's line limit: the client's reader raises ValueError, not a ClientError
    "oversized_line": b"data: " + b"x" * 300_000 + b"\n\n",
    # not UTF-8, no field names: decoded with replacement characters, never an event
    "binary": bytes(range(256)) * 64 + b"\n\n",
    # a status whose slots are a number: parsing it raises TypeError
    "wrong_types": b'event: status\ndata: {"engine": "running", "slots": 5}\n\n',
    # a URL yarl refuses (what a bad public_url gives): ValueError while handling the event
    "bad_image_url": b'event: image_generated\ndata: {"urls": ["http://[::1"]}\n\n',
}


@dataclass
class GarbageFront:
    """Passes requests to ``backend``; ``/api/events`` answers ``garbage`` and closes (None: the
    bridge's own stream passes through)."""

    backend: RunningBridge
    garbage: bytes | None
    port: int = field(default_factory=free_port)
    events_opened: int = 0
    status_polls: int = 0
    runner: web.AppRunner | None = None
    session: aiohttp.ClientSession | None = None

    async def _events(self, request: web.Request) -> web.StreamResponse:
        self.events_opened += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if self.garbage is not None:
            await response.write(self.garbage)
        else:
            assert self.session is not None
            auth = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
            async with self.session.get(f"{self.backend.url}/api/events", headers=auth) as upstream:
                assert upstream.status == 200, upstream.status
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
        await response.write_eof()
        return response

    async def _pass(self, request: web.Request) -> web.Response:
        assert self.session is not None
        if request.path == "/api/comfyui/status":
            self.status_polls += 1
        async with self.session.request(
            request.method,
            f"{self.backend.url}{request.path_qs}",
            headers={k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type")},
            data=await request.read(),
        ) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status, content_type=upstream.content_type)

    async def start(self) -> None:
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_get("/api/events", self._events)
        app.router.add_route("*", "/{tail:.*}", self._pass)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()


@pytest.fixture
async def make_front(
    hass: HomeAssistant, bridge: RunningBridge
) -> AsyncIterator[Callable[[bytes], Coroutine[Any, Any, GarbageFront]]]:
    fronts: list[GarbageFront] = []

    async def _make(garbage: bytes) -> GarbageFront:
        front = GarbageFront(bridge, garbage)
        await front.start()
        fronts.append(front)
        return front

    yield _make
    for entry in hass.config_entries.async_entries("hal0"):
        await hass.config_entries.async_unload(entry.entry_id)
    for front in fronts:
        await front.stop()


async def _poll(hass: HomeAssistant, front: GarbageFront) -> None:
    """Let one regular poll run, and wait until it has been answered."""
    before = front.status_polls
    async_fire_time_changed(hass, dt_util.utcnow() + POLL_INTERVAL)
    await wait_until(lambda: front.status_polls > before, "a poll reached the bridge")
    await hass.async_block_till_done()


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_on_the_stream_falls_back_to_polling(
    hass: HomeAssistant, bridge: RunningBridge, make_front: Any, garbage: bytes
) -> None:
    front = await make_front(garbage)
    entry = await setup_entry(hass, bridge, port=front.port)
    coordinator = entry.runtime_data
    await wait_until(lambda: front.events_opened >= 1, "the stream was opened")
    await wait_until(lambda: coordinator._stream_task is None, "the stream task ended")

    assert coordinator.update_interval == POLL_INTERVAL
    assert not coordinator.streaming
    # polling still carries every change of the bridge to the entities
    bridge.bridge.hub.update(idle_restore_at=WHEN)
    await _poll(hass, front)
    assert hass.states.get(IDLE_RESTORE).state == dt_util.utc_from_timestamp(WHEN).isoformat()


async def test_a_stream_that_keeps_failing_is_retried_with_backoff(
    hass: HomeAssistant, bridge: RunningBridge, make_front: Any
) -> None:
    front = await make_front(GARBAGE["oversized_line"])
    entry = await setup_entry(hass, bridge, port=front.port)
    coordinator = entry.runtime_data
    await wait_until(lambda: front.events_opened == 1 and coordinator._stream_task is None, "first failure")

    opened_after_poll = []
    for _ in range(7):
        await _poll(hass, front)
        await wait_until(lambda: coordinator._stream_task is None, "stream attempt over")
        opened_after_poll.append(front.events_opened)

    # after the n-th quick failure in a row the 2**(n-1)-th poll opens the stream again
    assert opened_after_poll == [2, 2, 3, 3, 3, 3, 4]
    assert coordinator.update_interval == POLL_INTERVAL


async def test_the_stream_is_followed_again_once_the_bridge_speaks_sse(
    hass: HomeAssistant, bridge: RunningBridge, make_front: Any
) -> None:
    front = await make_front(GARBAGE["wrong_types"])
    entry = await setup_entry(hass, bridge, port=front.port)
    coordinator = entry.runtime_data
    await wait_until(lambda: front.events_opened == 1 and coordinator._stream_task is None, "first failure")

    front.garbage = None  # from now on the bridge's real stream passes through
    await _poll(hass, front)

    await wait_until(lambda: coordinator.streaming, "stream followed again")
    bridge.bridge.hub.update(idle_restore_at=WHEN)
    expected = dt_util.utc_from_timestamp(WHEN).isoformat()
    await wait_until(lambda: hass.states.get(IDLE_RESTORE).state == expected, "pushed, not polled")
