"""The mosquitto ACL of docs/mqtt.md, run as written against a real broker: the bridge works under
its account, a watch-only client cannot command the GPU, an automation client can."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from hal0_bridge.status import StatusHub

from tests.daemon.mqtt.test_bridge import DispatcherDouble, T, make_config, start_bridge
from tests.support.mosquitto import Mosquitto, MqttProbe, have_mosquitto

pytestmark = pytest.mark.skipif(not have_mosquitto(), reason="mosquitto is not installed")

DOC = Path(__file__).resolve().parents[3] / "docs" / "mqtt.md"
USERS = {"hal0-bridge": "bridge-pw", "automation": "auto-pw", "dashboard": "dash-pw"}


def documented_acl() -> str:
    match = re.search(r"^```text mosquitto-acl\n(.*?)^```", DOC.read_text(), re.M | re.S)
    assert match, "docs/mqtt.md lost its ACL example"
    return match.group(1)


async def test_the_documented_acl_guards_the_commands(tmp_path: Path) -> None:
    hub = StatusHub()
    dispatcher = DispatcherDouble(hub)
    with Mosquitto(tmp_path / "broker", users=USERS, acl=documented_acl()) as broker:
        dashboard = await MqttProbe(broker, username="dashboard", password=USERS["dashboard"]).connect("hal0/#")
        automation = await MqttProbe(broker, username="automation", password=USERS["automation"]).connect("hal0/#")
        config = make_config(broker, username="hal0-bridge", password=USERS["hal0-bridge"], discovery=True)
        bridge = await start_bridge(config, hub, dispatcher)
        try:
            assert (await dashboard.wait_for(T.mode)).text == "inference"  # watching works
            dashboard.publish(T.mode_set, "generation")  # refused by the broker: dropped
            dashboard.publish(T.request("cancel"), "{}")
            dashboard.publish("hal0/marker", "m")
            await asyncio.sleep(0.5)
            assert dispatcher.calls == []
            assert dashboard.messages("hal0/marker") == []  # the dashboard cannot write anywhere
            automation.publish(T.mode_set, "generation")
            reply = await automation.wait_for(T.response("switchover"))
            assert reply.json()["data"] == {"status": "switching", "mode": "generation"}
            assert dispatcher.calls == [("switchover", ({"mode": "generation"}, "mqtt"))]
            assert (await dashboard.wait_for(T.mode, lambda m: m.text == "generation")).retain
        finally:
            await bridge.stop()
            dashboard.close()
            automation.close()
    assert "Denied PUBLISH" in broker.log_text()  # refused by the ACL, not lost
