"""MqttBridge against a real mosquitto, watched by an independent paho client.

The bridge runs in-process with a real StatusHub; the dispatcher is a small test double with the
method names and shapes of ``Commands`` (the end-to-end tests in test_mqtt_daemon.py use the real
daemon). Every assertion is on what a second client really receives: topic, payload, QoS, retain.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hal0_bridge import errors
from hal0_bridge.config import Config, build
from hal0_bridge.errors import ApiError
from hal0_bridge.mqtt.bridge import MqttBridge
from hal0_bridge.mqtt.topics import Topics
from hal0_bridge.status import LlmStatus, Progress, Queue, StatusHub

from tests.support.mosquitto import Mosquitto, MqttProbe, have_mosquitto

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")

CONNECT_TIMEOUT = 10.0
NODE = "testnode"
T = Topics("hal0", "homeassistant", NODE)


class DispatcherDouble:
    """Test double of the Commands interface: records calls, answers like the real one would."""

    def __init__(self, hub: StatusHub) -> None:
        self.hub = hub
        self.calls: list[tuple[str, Any]] = []
        self.fail_with: Exception | None = None

    def info(self) -> dict[str, Any]:
        return {
            "name": "hal0-bridge",
            "version": "0.1.0",
            "node_id": NODE,
            "api_url": "http://127.0.0.1:8080",
            "models": [{"id": "sdxl-turbo"}],
            "capabilities": ["images", "arbiter", "mqtt"],
        }

    async def status(self) -> dict[str, Any]:
        self.calls.append(("status", None))
        if self.fail_with is not None:
            raise self.fail_with
        return self.hub.status.to_dict()

    async def switchover(self, body: Any, *, trigger: str) -> tuple[int, dict[str, Any]]:
        self.calls.append(("switchover", (body, trigger)))
        if not isinstance(body, dict) or body.get("mode") not in ("generation", "inference"):
            raise ApiError(errors.INVALID_MODE, "mode must be generation or inference", param="mode")
        if body["mode"] == self.hub.status.mode:
            return 200, {"status": "noop", "mode": body["mode"]}
        self.hub.update(mode=body["mode"], pinned=bool(body.get("pin")))
        return 202, {"status": "switching", "mode": body["mode"]}

    async def pin(self, body: Any) -> dict[str, Any]:
        self.calls.append(("pin", body))
        if not isinstance(body, dict) or not isinstance(body.get("pinned"), bool):
            raise ApiError(errors.INVALID_PIN, "pinned must be a boolean", param="pinned")
        self.hub.update(pinned=body["pinned"])
        return {"pinned": body["pinned"]}

    async def generate(self, body: Any) -> dict[str, Any]:
        self.calls.append(("generate", body))
        return {"created": 1, "data": [{"url": "/api/images/cache/0123.png"}], "_hal0": {"seed": 7}}

    async def cancel(self) -> dict[str, Any]:
        self.calls.append(("cancel", None))
        return {"status": "cancelled", "dropped_pending": 0, "interrupted": 0}


def make_config(broker: Mosquitto, **mqtt: Any) -> Config:
    return build(
        {
            "server": {"max_body_bytes": 4096},
            "mqtt": {"host": broker.host, "port": broker.port, "node_id": NODE, **mqtt},
        }
    )


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    with Mosquitto(tmp_path / "broker") as running:
        yield running


@pytest.fixture
def hub() -> StatusHub:
    return StatusHub()


@pytest.fixture
def dispatcher(hub: StatusHub) -> DispatcherDouble:
    return DispatcherDouble(hub)


async def start_bridge(config: Config, hub: StatusHub, dispatcher: DispatcherDouble) -> MqttBridge:
    bridge = MqttBridge(config, hub, dispatcher)  # type: ignore[arg-type]
    await bridge.start()
    await asyncio.wait_for(bridge.wait_connected(), CONNECT_TIMEOUT)
    return bridge


@pytest.fixture(params=["3.1.1", "5"])
async def bridge(request, broker, hub, dispatcher) -> AsyncIterator[MqttBridge]:
    running = await start_bridge(make_config(broker, protocol=request.param), hub, dispatcher)
    yield running
    await running.stop()


@pytest.fixture
async def probe(broker) -> AsyncIterator[MqttProbe]:
    client = await MqttProbe(broker).connect("hal0/#", "homeassistant/#")
    yield client
    client.close()


# ------------------------------------------------------------------ availability and state


async def test_availability_is_online_retained_qos1(bridge, probe):
    msg = await probe.wait_for(T.availability)
    assert (msg.text, msg.qos, msg.retain) == ("online", 1, True)


async def test_bridge_info_is_retained_json_without_secrets(broker, hub, dispatcher, probe):
    bridge = await start_bridge(make_config(broker, username="", password="hunter2"), hub, dispatcher)
    try:
        msg = await probe.wait_for(T.info)
    finally:
        await bridge.stop()
    assert msg.retain and msg.qos == 1
    assert msg.json()["node_id"] == NODE
    assert "hunter2" not in msg.text


async def test_every_state_topic_is_published_retained_on_connect(bridge, probe):
    for topic in (T.status, T.mode, T.engine, T.pinned, T.queue, T.memory, T.switchover):
        msg = await probe.wait_for(topic)
        assert (msg.qos, msg.retain) == (1, True), topic
    assert (await probe.wait_for(T.mode)).text == "inference"
    assert (await probe.wait_for(T.pinned)).text == "OFF"
    assert (await probe.wait_for(T.queue)).json() == {"running": 0, "pending": 0}
    assert (await probe.wait_for(T.status)).json()["engine"] == "stopped"


async def test_a_state_change_is_published_retained(bridge, probe, hub):
    await probe.wait_for(T.mode)
    hub.update(mode="generation", engine="running")
    msg = await probe.wait_for(T.mode, lambda m: m.text == "generation")
    assert msg.retain
    assert (await probe.wait_for(T.engine, lambda m: m.text == "running")).retain


async def test_llm_state_is_published_retained_as_json(bridge, probe, hub):
    assert (await probe.wait_for(T.llm_state)).json() == {"in_flight": 0, "queued": 0, "models": []}
    hub.update(llm=LlmStatus(in_flight=2, queued=5, models=("tiny",)))
    msg = await probe.wait_for(T.llm_state, lambda m: m.json()["queued"] == 5)
    assert (msg.retain, msg.qos, T.llm_state) == (True, 1, "hal0/llm/state")
    assert msg.json() == {"in_flight": 2, "queued": 5, "models": ["tiny"]}


async def test_a_burst_of_changes_is_coalesced_and_ends_with_the_last_state(bridge, probe, hub):
    await probe.wait_for(T.queue)
    for pending in range(1, 101):
        hub.update(queue=Queue(running=1, pending=pending))
    await probe.wait_for(T.queue, lambda m: m.json() == {"running": 1, "pending": 100})
    await asyncio.sleep(0.5)  # let anything still queued arrive before counting
    published = [m.json() for m in probe.messages(T.queue)]
    assert published[-1] == {"running": 1, "pending": 100}
    assert len(published) < 10  # 100 updates, one initial + a few coalesced publishes


async def test_render_progress_churn_is_rate_limited_and_ends_with_the_last_step(bridge, probe, hub):
    await probe.wait_for(T.status)
    for step in range(1, 51):
        hub.update(progress=Progress(prompt_id="p1", step=step, steps=50))
        await asyncio.sleep(0.01)  # a fast sampler: each step is its own loop turn
    last = await probe.wait_for(T.status, lambda m: (m.json()["progress"] or {}).get("step") == 50)
    assert last.retain
    assert len(probe.messages(T.status)) < 25  # 50 steps, not one message each
    assert len(probe.messages(T.mode)) == 1  # nothing else was re-sent


async def test_unchanged_state_topics_are_not_published_again(bridge, probe, hub):
    await probe.wait_for(T.mode)
    hub.update(queue=Queue(running=0, pending=3))
    await probe.wait_for(T.queue, lambda m: m.json()["pending"] == 3)
    assert len(probe.messages(T.mode)) == 1


async def test_events_are_published_not_retained(bridge, probe, hub):
    await probe.wait_for(T.availability)
    hub.emit("image_generated", urls=["/api/images/cache/x.png"], model="sdxl-turbo", seed=1)
    msg = await probe.wait_for(T.event)
    assert (msg.qos, msg.retain) == (1, False)
    assert msg.json()["type"] == "image_generated"
    assert msg.json()["urls"] == ["/api/images/cache/x.png"]


async def test_an_event_never_overtakes_the_state_change_before_it(bridge, probe, hub):
    await probe.wait_for(T.mode)
    hub.update(queue=Queue(running=1, pending=0))  # starts the rate limit window
    await probe.wait_for(T.queue, lambda m: m.json()["running"] == 1)
    hub.update(mode="generation")
    hub.emit("switch_finished", mode="generation")
    await probe.wait_for(T.event)
    topics = [m.topic for m in probe.messages()]
    assert T.mode in topics[topics.index(T.queue, 1) :]
    assert probe.messages(T.mode)[-1].text == "generation"
    assert topics.index(T.event) > len(topics) - 1 - topics[::-1].index(T.mode)


async def test_stop_publishes_offline_retained(broker, hub, dispatcher, probe):
    bridge = await start_bridge(make_config(broker), hub, dispatcher)
    await probe.wait_for(T.availability, lambda m: m.text == "online")
    await bridge.stop()
    msg = await probe.wait_for(T.availability, lambda m: m.text == "offline")
    assert (msg.qos, msg.retain) == (1, True)


async def test_home_assistant_online_republishes_everything(bridge, probe):
    await probe.wait_for(T.mode)
    probe.clear()
    probe.publish(T.ha_status, "online")
    for topic in (T.availability, T.info, T.mode, T.status):
        assert (await probe.wait_for(topic)).retain


async def test_home_assistant_offline_changes_nothing(bridge, probe):
    await probe.wait_for(T.mode)
    probe.clear()
    probe.publish(T.ha_status, "offline")
    probe.publish(T.request("status"), "{}")  # a marker: handled after the status message
    await probe.wait_for(T.response("status"))
    assert probe.messages(T.mode) == []


# ------------------------------------------------------------------------ broker failures


async def retained(broker: Mosquitto, topic: str) -> Any:
    """What a client subscribing now receives first on ``topic``."""
    fresh = await MqttProbe(broker).connect(topic)
    try:
        return await fresh.wait_for(topic)
    finally:
        fresh.close()


async def test_broker_restart_brings_retained_state_back(broker, hub, dispatcher):
    bridge = await start_bridge(make_config(broker), hub, dispatcher)
    try:
        hub.update(mode="generation")
        await asyncio.to_thread(broker.restart)  # persistence off: every retained message is gone
        late = await MqttProbe(broker).connect("hal0/#")
        try:
            # paho may first re-send what the old broker never acknowledged; the fresh state follows.
            await late.wait_for(T.mode, lambda m: m.text == "generation")
            assert (await late.wait_for(T.availability)).text == "online"
        finally:
            late.close()
        mode = await retained(broker, T.mode)
        assert (mode.text, mode.retain) == ("generation", True)
        assert (await retained(broker, T.availability)).text == "online"
    finally:
        await bridge.stop()


async def test_a_change_while_the_broker_is_down_is_published_after_reconnect(broker, hub, dispatcher):
    bridge = await start_bridge(make_config(broker), hub, dispatcher)
    try:
        await asyncio.to_thread(broker.stop)
        hub.update(pinned=True)
        await asyncio.to_thread(broker.start)
        late = await MqttProbe(broker).connect("hal0/#")
        try:
            await late.wait_for(T.pinned, lambda m: m.text == "ON")
        finally:
            late.close()
        assert (await retained(broker, T.pinned)).text == "ON"
    finally:
        await bridge.stop()


async def test_start_does_not_fail_when_the_broker_is_down(tmp_path, hub, dispatcher):
    broker = Mosquitto(tmp_path / "late")
    bridge = MqttBridge(make_config(broker), hub, dispatcher)  # type: ignore[arg-type]
    await bridge.start()
    try:
        assert not bridge.connected
        await asyncio.to_thread(broker.start)
        await asyncio.wait_for(bridge.wait_connected(), CONNECT_TIMEOUT)
        probe = await MqttProbe(broker).connect("hal0/#")
        assert (await probe.wait_for(T.availability)).text == "online"
        probe.close()
    finally:
        await bridge.stop()
        broker.stop()


# ------------------------------------------------------------------------------ commands


async def test_mode_set_plain_text_switches_with_the_mqtt_trigger(bridge, probe, dispatcher):
    await probe.wait_for(T.mode)
    probe.publish(T.mode_set, "generation")
    await probe.wait_for(T.mode, lambda m: m.text == "generation")
    assert dispatcher.calls[-1] == ("switchover", ({"mode": "generation"}, "mqtt"))


async def test_mode_set_answers_on_the_switchover_response_topic(bridge, probe):
    probe.publish(T.mode_set, "generation")
    reply = (await probe.wait_for(T.response("switchover"))).json()
    assert reply == {"status": "ok", "data": {"status": "switching", "mode": "generation"}, "error": None, "transaction": None}


async def test_mode_set_json_passes_force_and_pin_and_echoes_the_transaction(bridge, probe, dispatcher):
    probe.publish(T.mode_set, json.dumps({"mode": "generation", "force": True, "pin": True, "transaction": "t-1"}))
    reply = (await probe.wait_for(T.response("switchover"))).json()
    assert reply["transaction"] == "t-1"
    assert dispatcher.calls[-1] == ("switchover", ({"mode": "generation", "force": True, "pin": True}, "mqtt"))
    assert (await probe.wait_for(T.pinned, lambda m: m.text == "ON")).retain


async def test_mode_set_garbage_is_an_error_reply_and_changes_nothing(bridge, probe, hub):
    await probe.wait_for(T.mode)
    probe.publish(T.mode_set, "turbo-mode")
    reply = (await probe.wait_for(T.response("switchover"))).json()
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "comfyui.invalid_mode"
    assert hub.status.mode == "inference"


@pytest.mark.parametrize("payload", ["[1, 2]", "{not json", "42"])
async def test_mode_set_bad_json_is_an_error_reply(bridge, probe, dispatcher, payload):
    probe.publish(T.mode_set, payload)
    reply = (await probe.wait_for(T.response("switchover"))).json()
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "comfyui.invalid_mode"  # as REST answers a malformed body


@pytest.mark.parametrize(("payload", "pinned"), [("ON", True), ("true", True), ("off", False), ("FALSE", False)])
async def test_pin_set_accepts_on_off_true_false(bridge, probe, dispatcher, payload, pinned):
    probe.publish(T.pin_set, payload)
    reply = (await probe.wait_for(T.response("pin"))).json()
    assert reply["data"] == {"pinned": pinned}
    assert dispatcher.calls[-1] == ("pin", {"pinned": pinned})


async def test_pin_set_garbage_is_refused_without_calling_the_dispatcher(bridge, probe, dispatcher):
    probe.publish(T.pin_set, "maybe")
    reply = (await probe.wait_for(T.response("pin"))).json()
    assert reply["error"]["code"] == "comfyui.invalid_pin"
    assert not [c for c in dispatcher.calls if c[0] == "pin"]


async def test_a_retained_command_does_not_fire_on_connect(broker, probe, hub, dispatcher):
    probe.publish(T.mode_set, "generation", retain=True)  # left on the broker by a careless client
    probe.publish(T.request("status"), "{}", retain=True)
    bridge = await start_bridge(make_config(broker), hub, dispatcher)
    try:
        probe.publish(T.request("info"), "{}")  # a marker handled after the replayed retained messages
        await probe.wait_for(T.response("info"))
    finally:
        await bridge.stop()
        probe.publish(T.mode_set, b"", retain=True)
        probe.publish(T.request("status"), b"", retain=True)
    assert hub.status.mode == "inference"
    assert dispatcher.calls == []
    assert probe.messages(T.response("status")) == []


# ---------------------------------------------------------------------- request/response


async def test_request_status_echoes_the_transaction(bridge, probe, hub):
    probe.publish(T.request("status"), json.dumps({"transaction": "abc-42"}))
    msg = await probe.wait_for(T.response("status"))
    reply = msg.json()
    assert (reply["status"], reply["transaction"], reply["error"]) == ("ok", "abc-42", None)
    assert reply["data"]["mode"] == hub.status.mode
    assert (msg.qos, msg.retain) == (1, False)


async def test_request_with_an_empty_payload_is_served(bridge, probe):
    probe.publish(T.request("info"), b"")
    reply = (await probe.wait_for(T.response("info"))).json()
    assert reply["data"]["node_id"] == NODE


async def test_request_switchover_returns_the_dispatcher_answer(bridge, probe):
    probe.publish(T.request("switchover"), json.dumps({"mode": "inference", "transaction": 5}))
    reply = (await probe.wait_for(T.response("switchover"))).json()
    assert reply == {"status": "ok", "data": {"status": "noop", "mode": "inference"}, "error": None, "transaction": 5}


async def test_request_generate_answers_with_the_image_url(bridge, probe, dispatcher):
    probe.publish(T.request("generate"), json.dumps({"prompt": "a fox", "transaction": "g1"}))
    reply = (await probe.wait_for(T.response("generate"))).json()
    assert reply["data"]["data"][0]["url"].endswith(".png")
    assert dispatcher.calls[-1] == ("generate", {"prompt": "a fox"})


async def test_request_cancel_reaches_the_dispatcher(bridge, probe, dispatcher):
    probe.publish(T.request("cancel"), "{}")
    reply = (await probe.wait_for(T.response("cancel"))).json()
    assert reply["data"]["status"] == "cancelled"


async def test_unknown_action_is_an_error_reply(bridge, probe):
    probe.publish(T.request("selfdestruct"), json.dumps({"transaction": "x"}))
    reply = (await probe.wait_for(T.response("selfdestruct"))).json()
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "request.not_found"
    assert reply["transaction"] == "x"


async def test_invalid_json_request_is_an_error_reply(bridge, probe):
    probe.publish(T.request("status"), "{oops")
    reply = (await probe.wait_for(T.response("status"))).json()
    assert reply["error"]["code"] == "request.invalid_json"


async def test_non_utf8_request_is_an_error_reply(bridge, probe):
    probe.publish(T.request("status"), b"\xff\xfe\x00")
    reply = (await probe.wait_for(T.response("status"))).json()
    assert reply["error"]["code"] == "request.invalid_json"


@pytest.mark.parametrize("payload", ["[]", "\"status\"", "null", "3.5"])
async def test_request_that_is_not_an_object_is_an_error_reply(bridge, probe, payload):
    probe.publish(T.request("status"), payload)
    reply = (await probe.wait_for(T.response("status"))).json()
    assert reply["error"]["code"] == "request.body_not_object"


async def test_huge_request_is_refused_without_a_dispatcher_call(bridge, probe, dispatcher):
    probe.publish(T.request("generate"), json.dumps({"prompt": "x" * 100_000}))
    reply = (await probe.wait_for(T.response("generate"))).json()
    assert reply["error"]["code"] == "request.body_too_large"
    assert dispatcher.calls == []


async def test_a_failing_command_becomes_an_error_reply_and_the_bridge_keeps_serving(bridge, probe, dispatcher):
    dispatcher.fail_with = RuntimeError("boom")
    probe.publish(T.request("status"), json.dumps({"transaction": 1}))
    reply = (await probe.wait_for(T.response("status"))).json()
    assert reply["status"] == "error" and reply["transaction"] == 1
    dispatcher.fail_with = None
    probe.publish(T.request("status"), json.dumps({"transaction": 2}))
    assert (await probe.wait_for(T.response("status"), lambda m: m.json()["transaction"] == 2)).json()["status"] == "ok"


async def test_an_error_echoing_a_lone_surrogate_is_still_answered(bridge, probe, dispatcher):
    """JSON can carry "\\ud800" in; UTF-8 cannot encode it: the answer escapes it instead of vanishing."""
    dispatcher.fail_with = ApiError(errors.UNKNOWN_FIELD, "unknown field", param="x\ud800")
    probe.publish(T.request("status"), json.dumps({"transaction": "t\udfff"}))
    reply = (await probe.wait_for(T.response("status"))).json()
    assert reply["error"]["param"] == "x\ud800" and reply["transaction"] == "t\udfff"


async def test_mqtt5_response_topic_and_correlation_data_are_honoured(broker, hub, dispatcher, probe):
    bridge = await start_bridge(make_config(broker, protocol="5"), hub, dispatcher)
    try:
        probe.publish(T.request("status"), "{}", response_topic="hal0/response/me/1", correlation=b"\x01corr")
        msg = await probe.wait_for("hal0/response/me/1")
    finally:
        await bridge.stop()
    assert msg.json()["status"] == "ok"
    assert msg.properties.CorrelationData == b"\x01corr"
    assert probe.messages(T.response("status")) == []


@pytest.mark.parametrize(
    "response_topic",
    [
        "hal0/comfyui/mode", "homeassistant/device/x/config", "hal0/availability",
        # outside the response prefix: another device's command topic, or anywhere else (issue 11)
        "zigbee2mqtt/garage_door/set", "hal0/replies/me", "hal0/response", "hal0/response/", "hal0/response/#",
        "hal0/responses/x",
    ],
)  # fmt: skip
async def test_mqtt5_response_topic_outside_the_response_prefix_falls_back_to_the_response_topic(
    broker, hub, dispatcher, probe, response_topic
):
    bridge = await start_bridge(make_config(broker, protocol="5"), hub, dispatcher)
    try:
        await probe.wait_for(T.mode)
        probe.publish(T.request("status"), "{}", response_topic=response_topic, correlation=b"c")
        reply = await probe.wait_for(T.response("status"))
    finally:
        await bridge.stop()
    assert reply.json()["status"] == "ok"
    assert not [m for m in probe.messages(response_topic) if b'"transaction"' in m.payload]


# ---------------------------------------------------------------------------- mqtt.commands = read_only


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_read_only_takes_no_command_and_answers_no_request(broker, hub, dispatcher, probe, protocol):
    bridge = await start_bridge(make_config(broker, protocol=protocol, commands="read_only"), hub, dispatcher)
    try:
        assert (await probe.wait_for(T.mode)).text == "inference"  # state is still published
        probe.publish(T.mode_set, "generation")
        probe.publish(T.pin_set, "ON")
        for action in ("status", "switchover", "generate", "cancel"):
            probe.publish(T.request(action), json.dumps({"mode": "generation", "prompt": "x", "transaction": 1}))
        # a marker published after the commands: once it is back, the broker has delivered them all
        probe.publish("hal0/marker", "m")
        await probe.wait_for("hal0/marker")
        await asyncio.sleep(0.3)
        hub.emit("render_failed", code="x", message="y", model="z")
        assert (await probe.wait_for(T.event)).json()["type"] == "render_failed"  # events still flow
    finally:
        await bridge.stop()
    assert dispatcher.calls == []
    assert hub.status.mode == "inference" and hub.status.pinned is False
    assert not [m for m in probe.messages() if m.topic.startswith("hal0/response/")]
    # and the broker confirms the bridge never subscribed to a command or request topic
    subscribed = [line for line in broker.log_text().splitlines() if f"hal0-bridge-{NODE} " in line and " 1 " in line]
    assert any("homeassistant/status" in line for line in subscribed), subscribed
    assert not any("/set" in line or "/request/" in line for line in subscribed), subscribed


async def test_read_only_discovery_offers_no_controls(broker, hub, dispatcher, probe):
    bridge = await start_bridge(make_config(broker, discovery=True, commands="read_only"), hub, dispatcher)
    try:
        config = (await probe.wait_for(T.discovery)).json()
    finally:
        await bridge.stop()
    platforms = {c["platform"] for c in config["components"].values()}
    assert not platforms & {"select", "switch", "button"}
    assert not [c for c in config["components"].values() if "command_topic" in c]


# ---------------------------------------------------------------------------- authentication


async def test_bridge_authenticates_with_username_and_password(tmp_path, hub, dispatcher):
    with Mosquitto(tmp_path / "auth", users={"hal0": "s3cret", "watcher": "w"}) as broker:
        probe = await MqttProbe(broker, username="watcher", password="w").connect("hal0/#")
        bridge = await start_bridge(make_config(broker, username="hal0", password="s3cret"), hub, dispatcher)
        try:
            assert (await probe.wait_for(T.availability)).text == "online"
        finally:
            await bridge.stop()
            probe.close()


async def test_wrong_password_never_connects_and_never_raises(tmp_path, hub, dispatcher):
    with Mosquitto(tmp_path / "auth", users={"hal0": "s3cret"}) as broker:
        bridge = MqttBridge(make_config(broker, username="hal0", password="wrong"), hub, dispatcher)  # type: ignore[arg-type]
        await bridge.start()
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(bridge.wait_connected(), 1.5)
            assert "not authorised" in broker.log_text()
        finally:
            await bridge.stop()
