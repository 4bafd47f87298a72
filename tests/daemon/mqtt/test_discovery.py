"""Home Assistant MQTT discovery: the payload passes HA's own schemas, and the switch on/off works.

The payload is checked with the code Home Assistant runs when it receives a device discovery message
(``discovery._parse_device_payload`` + ``DEVICE_DISCOVERY_SCHEMA``) and then each component with
its platform's ``DISCOVERY_SCHEMA``, which silently drops unknown keys — so we also assert that
nothing we send is dropped (a misspelt key would otherwise go unnoticed).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hal0_bridge.config import build
from hal0_bridge.mqtt.bridge import MqttBridge
from hal0_bridge.mqtt.payloads import state_payloads
from hal0_bridge.mqtt.discovery import discovery_payload
from hal0_bridge.mqtt.topics import Topics
from hal0_bridge.status import Gpu, LlmStatus, Memory, Queue, Status, StatusHub, Switchover

from tests.support.mosquitto import Mosquitto, MqttProbe, have_mosquitto

ha_mqtt = pytest.importorskip("homeassistant.components.mqtt")
from homeassistant.components.mqtt import (  # noqa: E402
    binary_sensor,
    discovery,
    schemas,
    select,
    sensor,
    switch,
)
from homeassistant.core import HomeAssistant  # noqa: E402
from homeassistant.helpers.template import Template  # noqa: E402

NODE = "gpu-box_1"
T = Topics("hal0", "homeassistant", NODE)
INFO = {"version": "0.1.0", "node_id": NODE, "api_url": "http://192.168.1.20:8080", "models": [], "capabilities": []}
PLATFORM_SCHEMAS = {
    "select": select.DISCOVERY_SCHEMA,
    "switch": switch.DISCOVERY_SCHEMA,
    "sensor": sensor.DISCOVERY_SCHEMA,
    "binary_sensor": binary_sensor.DISCOVERY_SCHEMA,
}
CONNECT_TIMEOUT = 10.0
GIB = 1024**3


@pytest.fixture
def payload() -> dict[str, Any]:
    return discovery_payload(T, INFO)


@pytest.fixture
async def hass(tmp_path: Path) -> HomeAssistant:
    """A bare HomeAssistant object: HA's template validator needs one in context (nothing is started)."""
    return HomeAssistant(str(tmp_path / "ha"))


def render(hass: HomeAssistant, template: str, value_json: Any) -> str:
    return Template(template, hass).async_render(variables={"value_json": value_json}, parse_result=False)


def test_discovery_topic_is_a_valid_device_discovery_topic():
    assert T.discovery == f"homeassistant/device/{NODE}/config"
    match = discovery.TOPIC_MATCHER.match(T.discovery.removeprefix("homeassistant/"))
    assert match is not None
    assert (match["component"], match["object_id"]) == ("device", NODE)


def test_payload_passes_home_assistants_device_discovery_schema(payload):
    schemas.DEVICE_DISCOVERY_SCHEMA(json.loads(json.dumps(payload)))


def test_payload_is_accepted_by_home_assistants_discovery_parser(payload):
    parsed = discovery._parse_device_payload(None, json.dumps(payload), NODE, None)  # noqa: SLF001
    assert parsed, "Home Assistant rejected the payload (see the warning in the log)"
    assert set(parsed["components"]) == set(payload["components"])


@pytest.mark.parametrize(
    "component",
    ["mode", "pinned", "engine", "queue_running", "queue_pending", "gtt_used", "gtt_total", "ram_used", "ram_total", "switching"],
)
async def test_each_component_passes_its_platform_schema_without_losing_keys(hass, payload, component):
    config = dict(json.loads(json.dumps(payload))["components"][component])
    platform = config.pop("platform")
    for option in schemas.SHARED_OPTIONS:  # what HA merges in from the device level
        if option in payload and option not in config:
            config[option] = payload[option]
    validated = PLATFORM_SCHEMAS[platform](config)
    assert set(config) <= set(validated), f"dropped by HA: {set(config) - set(validated)}"


@pytest.mark.parametrize(
    ("component", "value_json", "state"),
    [
        ("queue_running", {"running": 1, "pending": 4}, "1"),
        ("queue_pending", {"running": 1, "pending": 4}, "4"),
        ("gtt_used", {"gtt_used": 3 * 1024**3}, "3.0"),
        ("ram_total", {"ram_total": None}, "None"),  # HA's MQTT sensor reads "None" as unknown
        ("switching", {"active": True}, "ON"),
        ("switching", {"active": False}, "OFF"),
        ("gpu_busy", None, "None"),  # a host without amdgpu telemetry publishes null
    ],
)
async def test_value_templates_turn_our_json_into_the_entity_state(hass, payload, component, value_json, state):
    assert render(hass, payload["components"][component]["value_template"], value_json) == state


async def test_every_entity_reads_its_state_from_what_the_bridge_publishes(hass, payload):
    status = Status(
        mode="generation",
        engine="generating",
        pinned=True,
        queue=Queue(running=1, pending=2),
        memory=Memory(gtt_used=2 * GIB, gtt_total=96 * GIB, ram_used=GIB // 2, ram_total=None),
        switchover=Switchover(active=True, target="generation"),
        gpu=Gpu(card="card1", busy_percent=35.0, temperature_c=51.0, power_w=None),
        llm=LlmStatus(in_flight=2, queued=5, models=("qwen",)),
    )
    published = {topic: body.decode() for topic, body in state_payloads(T, status.to_dict()).items()}
    expected = {
        "mode": "generation", "pinned": "ON", "engine": "generating", "queue_running": "1", "queue_pending": "2",
        "gtt_used": "2.0", "gtt_total": "96.0", "ram_used": "0.5", "ram_total": "None", "switching": "ON",
        "gpu_busy": "35.0", "gpu_temperature": "51.0", "gpu_power": "None", "llm_in_flight": "2", "llm_queued": "5",
    }  # fmt: skip
    for name, component in payload["components"].items():
        body = published[component["state_topic"]]
        template = component.get("value_template")
        state = render(hass, template, json.loads(body)) if template else body
        assert state == expected[name], name


def test_payload_has_the_required_entities_with_unique_ids(payload):
    components = payload["components"]
    platforms = {name: c["platform"] for name, c in components.items()}
    assert platforms["mode"] == "select"
    assert platforms["pinned"] == "switch"
    assert platforms["switching"] == "binary_sensor"
    assert {"engine", "queue_running", "queue_pending", "gtt_used", "gtt_total", "ram_used", "ram_total",
            "llm_in_flight", "llm_queued"} <= {
        n for n, p in platforms.items() if p == "sensor"
    }
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    assert all(NODE in uid for uid in unique_ids)


def test_payload_points_at_the_bridges_own_topics(payload):
    components = payload["components"]
    assert payload["availability_topic"] == T.availability
    assert (components["mode"]["state_topic"], components["mode"]["command_topic"]) == (T.mode, T.mode_set)
    assert (components["pinned"]["state_topic"], components["pinned"]["command_topic"]) == (T.pinned, T.pin_set)
    assert components["switching"]["state_topic"] == T.switchover
    assert components["gtt_used"]["state_topic"] == T.memory
    assert components["llm_queued"]["state_topic"] == T.llm_state


def test_payload_carries_origin_and_device_without_secrets(payload):
    assert payload["origin"]["name"] == "hal0-bridge"
    assert payload["device"]["identifiers"] == [f"hal0_bridge_{NODE}"]
    assert payload["device"]["configuration_url"] == INFO["api_url"]


# --------------------------------------------------------------------------- on a real broker


class InfoOnly:
    """The one Commands method discovery needs (the rest is never called here)."""

    def info(self) -> dict[str, Any]:
        return INFO


@pytest.fixture
def broker(tmp_path: Path) -> Mosquitto:
    if not have_mosquitto():
        pytest.skip("mosquitto is not installed")
    with Mosquitto(tmp_path / "broker") as running:
        yield running


async def run_bridge(broker: Mosquitto, *, discovery_on: bool) -> MqttBridge:
    config = build({"mqtt": {"host": broker.host, "port": broker.port, "node_id": NODE, "discovery": discovery_on}})
    bridge = MqttBridge(config, StatusHub(), InfoOnly())  # type: ignore[arg-type]
    await bridge.start()
    await asyncio.wait_for(bridge.wait_connected(), CONNECT_TIMEOUT)
    return bridge


@pytest.fixture
async def probe(broker) -> AsyncIterator[MqttProbe]:
    client = await MqttProbe(broker).connect("homeassistant/#", "hal0/availability")
    yield client
    client.close()


async def test_discovery_on_publishes_a_retained_device_config(broker, probe):
    bridge = await run_bridge(broker, discovery_on=True)
    try:
        msg = await probe.wait_for(T.discovery)
    finally:
        await bridge.stop()
    assert (msg.qos, msg.retain) == (1, True)
    schemas.DEVICE_DISCOVERY_SCHEMA(msg.json())
    assert msg.json()["components"]["mode"]["command_topic"] == T.mode_set


async def test_discovery_off_publishes_an_empty_retained_config_that_removes_it(broker, probe):
    first = await run_bridge(broker, discovery_on=True)
    await probe.wait_for(T.discovery, lambda m: m.payload != b"")
    await first.stop()
    second = await run_bridge(broker, discovery_on=False)
    try:
        msg = await probe.wait_for(T.discovery, lambda m: m.payload == b"")
        assert msg.retain
        await probe.wait_for(T.availability, lambda m: m.text == "online", after=1)
    finally:
        await second.stop()
    late = await MqttProbe(broker).connect(T.discovery, T.availability)
    try:
        await late.wait_for(T.availability)  # retained messages arrive together; config would be there too
        assert late.messages(T.discovery) == []
    finally:
        late.close()


async def test_discovery_is_published_again_when_home_assistant_comes_online(broker, probe):
    bridge = await run_bridge(broker, discovery_on=True)
    try:
        await probe.wait_for(T.discovery)
        probe.publish(T.ha_status, "online")
        msg = await probe.wait_for(T.discovery, after=1)
    finally:
        await bridge.stop()
    assert msg.json()["device"]["identifiers"] == [f"hal0_bridge_{NODE}"]


# --------------------------------------------------------------------------- turned off through the API

TOKEN = "discovery-test-token-0123"


def _app_config(broker: Mosquitto, state_dir: Path, *, discovery_on: bool = True) -> Any:
    return build(
        {
            "server": {"token": TOKEN, "state_dir": str(state_dir)},
            "comfyui": {"url": "http://127.0.0.1:9", "probe_interval": 5.0},
            "mqtt": {"host": broker.host, "port": broker.port, "node_id": NODE, "discovery": discovery_on},
        }
    )


async def _connected_app(aiohttp_client: Any, config: Any) -> Any:
    from hal0_bridge.app import create_app
    from hal0_bridge.http.server import BRIDGE_KEY

    api = await aiohttp_client(create_app(config))
    await asyncio.wait_for(api.app[BRIDGE_KEY].mqtt.wait_connected(), CONNECT_TIMEOUT)
    return api


async def test_the_api_turns_discovery_off_and_a_restart_keeps_it_off(
    aiohttp_client: Any, broker: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    api = await _connected_app(aiohttp_client, _app_config(broker, tmp_path / "state"))
    await probe.wait_for(T.discovery, lambda m: m.payload != b"")

    answer = await api.post("/api/mqtt/discovery", json={"enabled": False}, headers=auth)

    assert answer.status == 200
    assert await answer.json() == {"enabled": False, "source": "api"}
    removed = await probe.wait_for(T.discovery, lambda m: m.payload == b"")
    assert removed.retain
    info = await (await api.get("/api/info")).json()
    assert info["mqtt"]["discovery"] is False
    await api.close()

    # the config file still says discovery = true; the choice made through the API wins
    probe.clear()
    again = await _connected_app(aiohttp_client, _app_config(broker, tmp_path / "state"))
    msg = await probe.wait_for(T.discovery)
    assert msg.payload == b""
    assert (await (await again.get("/api/info")).json())["mqtt"]["discovery"] is False


async def test_the_api_turns_discovery_back_on(
    aiohttp_client: Any, broker: Mosquitto, probe: MqttProbe, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    api = await _connected_app(aiohttp_client, _app_config(broker, tmp_path / "state", discovery_on=False))
    await probe.wait_for(T.discovery, lambda m: m.payload == b"")

    answer = await api.post("/api/mqtt/discovery", json={"enabled": True}, headers=auth)

    assert await answer.json() == {"enabled": True, "source": "api"}
    msg = await probe.wait_for(T.discovery, lambda m: m.payload != b"")
    assert msg.json()["device"]["identifiers"] == [f"hal0_bridge_{NODE}"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ({"enabled": False}, {}, 401, "auth.unauthorized"),
        ({"enabled": "no"}, {"Authorization": f"Bearer {TOKEN}"}, 422, "mqtt.invalid_discovery"),
        ({"enabled": False, "extra": 1}, {"Authorization": f"Bearer {TOKEN}"}, 422, "mqtt.invalid_discovery"),
        ([], {"Authorization": f"Bearer {TOKEN}"}, 422, "mqtt.invalid_discovery"),
    ],
)
async def test_the_discovery_route_refuses_bad_requests(
    aiohttp_client: Any, broker: Mosquitto, tmp_path: Path, body: Any, headers: dict[str, str], status: int, code: str
) -> None:
    api = await _connected_app(aiohttp_client, _app_config(broker, tmp_path / "state"))

    answer = await api.post("/api/mqtt/discovery", json=body, headers=headers)

    assert answer.status == status
    assert (await answer.json())["error"]["code"] == code
    assert not (tmp_path / "state" / "mqtt_discovery.json").exists()


async def test_the_discovery_route_says_so_when_mqtt_is_off(aiohttp_client: Any, tmp_path: Path) -> None:
    from hal0_bridge.app import create_app

    config = build({"server": {"token": TOKEN, "state_dir": str(tmp_path)}, "comfyui": {"url": "http://127.0.0.1:9"}})
    api = await aiohttp_client(create_app(config))

    answer = await api.post("/api/mqtt/discovery", json={"enabled": False}, headers={"Authorization": f"Bearer {TOKEN}"})

    assert answer.status == 409
    assert (await answer.json())["error"]["code"] == "mqtt.disabled"
