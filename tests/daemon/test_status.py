"""The status hub: change detection, coalescing feeds, events in order."""

from __future__ import annotations

import asyncio

from hal0_bridge.status import Queue, StatusHub


async def test_update_without_change_notifies_nobody() -> None:
    hub = StatusHub()
    feed = hub.subscribe(initial=False)
    assert hub.update(mode="inference") is False
    hub.update(mode="generation")
    msg = await asyncio.wait_for(feed.get(), 1)
    assert msg.kind == "status" and msg.data["mode"] == "generation"


async def test_a_lagging_reader_gets_only_the_newest_status() -> None:
    hub = StatusHub()
    feed = hub.subscribe(initial=False)
    for i in range(1, 50):
        hub.update(queue=Queue(running=1, pending=i))
    msg = await asyncio.wait_for(feed.get(), 1)
    assert msg.data["queue"] == {"running": 1, "pending": 49}


async def test_events_keep_their_order_between_statuses() -> None:
    hub = StatusHub()
    feed = hub.subscribe(initial=True)
    hub.emit("switch_started", target="generation")
    hub.update(mode="generation")
    hub.emit("switch_finished", target="generation")
    kinds = [(await feed.get()) for _ in range(4)]
    assert [m.kind for m in kinds] == ["status", "event", "status", "event"]
    assert kinds[1].data["type"] == "switch_started" and kinds[3].data["type"] == "switch_finished"


async def test_closed_subscription_receives_nothing() -> None:
    hub = StatusHub()
    with hub.subscribe() as feed:
        assert hub.subscriber_count == 1
    assert hub.subscriber_count == 0
    hub.update(mode="generation")
    assert feed._items  # only the initial snapshot was queued before closing
    assert len(feed._items) == 1


def test_status_json_follows_every_change() -> None:
    hub = StatusHub()
    assert b'"mode":"inference"' in hub.status_json()
    hub.update(mode="generation", queue=Queue(running=1, pending=2))
    body = hub.status_json()
    assert b'"mode":"generation"' in body and b'"pending":2' in body
