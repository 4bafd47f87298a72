"""docs/home-assistant-dashboard.yaml and its package docs/home-assistant-generate.yaml against a real
Home Assistant and a real bridge on a host named "strix" (the device is named by the bridge's hostname,
so its entity ids are the ones the dashboard is written for): it parses, every entity and action it
names exists, and its Generate button really renders an image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hal0_bridge import identity
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
from homeassistant.util.yaml import load_yaml

from .conftest import REPO, full_config, setup_entry, wait_until

DASHBOARD = REPO / "docs" / "home-assistant-dashboard.yaml"
PACKAGE = REPO / "docs" / "home-assistant-generate.yaml"
NODE = "strix"
# Home Assistant's own card types (the dashboard must work without custom cards)
CORE_CARDS = {"tile", "entities", "grid", "gauge", "glance", "picture-entity", "buttons", "vertical-stack"}


@pytest.fixture(autouse=True)
def host_named_strix(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bridge's host is "strix" (what /api/info says as hostname, and so the device's name)."""
    monkeypatch.setattr(identity, "hostname", lambda: NODE)


def walk(node: Any) -> Any:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        yield from walk(child)


def entity_ids(dashboard: Any) -> set[str]:
    found: set[str] = set()
    for node in walk(dashboard):
        if isinstance(node, dict):
            for key in ("entity", "entity_id"):
                if isinstance(node.get(key), str):
                    found.add(node[key])
        if isinstance(node, dict) and isinstance(node.get("entities"), list):
            found |= {e for e in node["entities"] if isinstance(e, str)}
    return found


def actions(dashboard: Any) -> set[str]:
    return {n["perform_action"] for n in walk(dashboard) if isinstance(n, dict) and "perform_action" in n}


def card_types(dashboard: Any) -> set[str]:
    return {n["type"] for n in walk(dashboard) if isinstance(n, dict) and "type" in n and ("entity" in n or "cards" in n
            or "entities" in n)}  # fmt: skip


async def setup_package(hass: HomeAssistant) -> None:
    package = load_yaml(PACKAGE)
    assert await async_setup_component(hass, "persistent_notification", {})
    assert await async_setup_component(hass, "input_text", {"input_text": package["input_text"]})
    assert await async_setup_component(hass, "script", {"script": package["script"]})
    await hass.async_block_till_done()


def test_the_dashboard_parses_with_home_assistants_loader() -> None:
    dashboard = load_yaml(DASHBOARD)

    assert dashboard["views"][0]["cards"]
    assert card_types(dashboard) <= CORE_CARDS, card_types(dashboard) - CORE_CARDS
    assert all(e.split(".")[1].startswith(f"hal0_{NODE}_") for e in entity_ids(dashboard)
               if e.split(".")[0] not in ("input_text", "script"))  # fmt: skip


async def test_every_entity_and_action_the_dashboard_names_exists(make_bridge: Any, hass: HomeAssistant,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    running = await make_bridge(config=full_config(tmp_path, node_id=NODE))
    await setup_entry(hass, running)
    await setup_package(hass)
    dashboard = load_yaml(DASHBOARD)

    named = entity_ids(dashboard)
    missing = sorted(e for e in named if hass.states.get(e) is None)

    assert len(named) >= 15
    assert not missing, f"the dashboard names entities the integration does not create: {missing}"
    for action in actions(dashboard):
        domain, service = action.split(".")
        assert hass.services.has_service(domain, service), action
    # the gauges point at numeric sensors in GiB / %
    for node in walk(dashboard):
        if isinstance(node, dict) and node.get("type") == "gauge":
            state = hass.states.get(node["entity"])
            assert state.attributes.get("unit_of_measurement") in ("GiB", "%"), node["entity"]


async def test_the_generate_button_renders_the_prompt(make_bridge: Any, hass: HomeAssistant, tmp_path: Path) -> None:
    running = await make_bridge(config=full_config(tmp_path, node_id=NODE))
    await setup_entry(hass, running)
    await setup_package(hass)
    await hass.services.async_call(
        "input_text", "set_value", {"entity_id": "input_text.hal0_prompt", "value": "a red bicycle"}, blocking=True
    )

    # what the button's tap does; the script waits for the render (it uses the action's response)
    await hass.services.async_call("script", "hal0_generate", blocking=True)

    entity = f"image.hal0_{NODE}_last_image"
    await wait_until(lambda: hass.states.get(entity).attributes.get("url") is not None, "the last image is shown")
    assert running.bridge.hub.status.mode == "generation"  # the script switched the GPU by itself
    async with aiohttp.ClientSession() as session:
        async with session.get(running.raw_config["comfyui"]["url"] + "/history") as resp:
            history = await resp.json()
    assert len(history) == 1 and "a red bicycle" in json.dumps(history)  # the helper's text was the prompt
