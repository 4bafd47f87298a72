"""MQTT over TLS against a real mosquitto with a throw-away CA: CA file, client certificate, insecure."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hal0_bridge.config import Config, build
from hal0_bridge.mqtt.bridge import MqttBridge
from hal0_bridge.status import StatusHub

from tests.support.mosquitto import Mosquitto, MqttProbe, have_mosquitto

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")

CONNECT_TIMEOUT = 10.0
REFUSED_WAIT = 1.5  # how long a bridge that must never connect is given to (wrongly) connect


class InfoOnly:
    """The one Commands method the bridge calls unprompted."""

    def info(self) -> dict[str, Any]:
        return {"version": "0.1.0", "node_id": "tls"}


def config(broker: Mosquitto, **mqtt: Any) -> Config:
    return build({"mqtt": {"host": broker.host, "port": broker.port, "node_id": "tls", "tls": True, **mqtt}})


async def connects(cfg: Config, timeout: float) -> bool:
    bridge = MqttBridge(cfg, StatusHub(), InfoOnly())  # type: ignore[arg-type]
    await bridge.start()
    try:
        await asyncio.wait_for(bridge.wait_connected(), timeout)
        return True
    except TimeoutError:
        return False
    finally:
        await bridge.stop()


async def test_tls_with_the_brokers_ca_file_connects_and_publishes(tmp_path: Path):
    with Mosquitto(tmp_path / "b", tls=True) as broker:
        probe = await MqttProbe(broker).connect("hal0/availability")
        try:
            assert await connects(config(broker, ca_file=str(broker.tls.ca_file)), CONNECT_TIMEOUT)
            assert (await probe.wait_for("hal0/availability")).text == "online"
        finally:
            probe.close()


async def test_tls_with_a_client_certificate_when_the_broker_requires_one(tmp_path: Path):
    with Mosquitto(tmp_path / "b", require_client_cert=True) as broker:
        tls = broker.tls
        cfg = config(broker, ca_file=str(tls.ca_file), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
        assert await connects(cfg, CONNECT_TIMEOUT)


async def test_tls_without_a_client_certificate_is_refused_by_such_a_broker(tmp_path: Path):
    with Mosquitto(tmp_path / "b", require_client_cert=True) as broker:
        assert not await connects(config(broker, ca_file=str(broker.tls.ca_file)), REFUSED_WAIT)


async def test_tls_insecure_accepts_a_certificate_from_an_unknown_ca(tmp_path: Path):
    with Mosquitto(tmp_path / "b", tls=True) as broker:
        assert await connects(config(broker, tls_insecure=True), CONNECT_TIMEOUT)


async def test_tls_never_connects_to_an_untrusted_certificate_and_never_raises(tmp_path: Path):
    with Mosquitto(tmp_path / "b", tls=True) as broker:
        assert not await connects(config(broker), REFUSED_WAIT)  # system CAs only: the test CA is unknown


async def test_a_missing_ca_file_leaves_mqtt_off_without_failing_start(tmp_path: Path):
    with Mosquitto(tmp_path / "b", tls=True) as broker:
        bridge = MqttBridge(config(broker, ca_file=str(tmp_path / "nope.pem")), StatusHub(), InfoOnly())  # type: ignore[arg-type]
        await bridge.start()  # logs the problem; the daemon keeps running without MQTT
        assert not bridge.connected
        await bridge.stop()
