"""What HACS and Home Assistant read from the package: manifest, hacs.json, translations, icons,
services.yaml, quality_scale.yaml, brand images. Each check names the file it guards."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import yaml
from homeassistant.core import HomeAssistant
from homeassistant.helpers.translation import async_get_translations
from homeassistant.loader import async_get_integration

from custom_components.hal0 import PLATFORMS
from custom_components.hal0.const import DOMAIN

ROOT = Path(__file__).resolve().parents[2]
COMPONENT = ROOT / "custom_components" / "hal0"
EN = json.loads((COMPONENT / "translations" / "en.json").read_text())


def _code() -> str:
    return "\n".join(p.read_text() for p in COMPONENT.glob("*.py"))


def test_manifest_has_what_hacs_and_home_assistant_need() -> None:
    manifest = json.loads((COMPONENT / "manifest.json").read_text())

    assert manifest["domain"] == DOMAIN
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    assert manifest["requirements"] == []
    assert {"version", "documentation", "issue_tracker", "codeowners", "name"} <= manifest.keys()


def test_hacs_json_names_the_minimum_home_assistant() -> None:
    hacs = json.loads((ROOT / "hacs.json").read_text())

    assert hacs["name"]
    assert re.fullmatch(r"\d{4}\.\d{1,2}\.\d+", hacs["homeassistant"])


def test_strings_json_and_english_translation_are_the_same() -> None:
    assert json.loads((COMPONENT / "strings.json").read_text()) == EN


def test_every_translation_key_in_the_code_has_an_exception_message() -> None:
    keys = set(re.findall(r'translation_domain=DOMAIN,\s*translation_key="([a-z_]+)"', _code()))

    assert keys
    assert keys <= EN["exceptions"].keys()


def test_every_config_flow_error_and_abort_is_translated() -> None:
    code = (COMPONENT / "config_flow.py").read_text()
    errors = set(re.findall(r'"base": "([a-z_]+)"', code))
    aborts = set(re.findall(r'reason="([a-z_]+)"', code)) | {"already_configured", "reauth_successful", "reconfigure_successful"}

    assert errors <= EN["config"]["error"].keys()
    # the options flow (same module) aborts with its own reasons
    assert aborts <= EN["config"]["abort"].keys() | EN["options"]["abort"].keys()


def test_every_options_error_is_translated() -> None:
    code = (COMPONENT / "options.py").read_text()
    errors = set(re.findall(r'errors\[CONF_[A-Z_]+\] = "([a-z_]+)"', code))

    assert errors == {"invalid_size"}
    assert errors <= EN["options"]["error"].keys()


def test_every_repair_issue_is_translated_and_the_fixable_one_has_its_flow() -> None:
    from custom_components.hal0.repairs import ALL_ISSUES

    assert set(ALL_ISSUES) == EN["issues"].keys()
    for key in ALL_ISSUES:
        assert EN["issues"][key]["title"] and EN["issues"][key]["description"]
    assert EN["issues"]["mqtt_discovery_on"]["fix_flow"]["step"]["confirm"]["description"]


def test_manifest_names_what_home_assistant_discovers_the_bridge_by() -> None:
    from custom_components.hal0.const import MQTT_INFO_TOPIC, ZEROCONF_TYPE

    manifest = json.loads((COMPONENT / "manifest.json").read_text())

    assert manifest["mqtt"] == [MQTT_INFO_TOPIC]
    assert manifest["zeroconf"] == [ZEROCONF_TYPE]


def test_every_config_field_has_a_data_description() -> None:
    for step in (*EN["config"]["step"].values(), *EN["options"]["step"].values()):
        assert step["data"].keys() == step["data_description"].keys()


def test_every_entity_description_has_a_name_and_an_icon_unless_its_device_class_gives_one() -> None:
    icons = json.loads((COMPONENT / "icons.json").read_text())["entity"]
    from custom_components.hal0 import ai_task, binary_sensor, button, image, select, sensor, switch

    descriptions = {
        "ai_task": [ai_task.IMAGE_GENERATOR],
        "binary_sensor": list(binary_sensor.BINARY_SENSORS),
        "button": [button.CANCEL_RENDERS],
        "image": [image.LAST_IMAGE],
        "select": [select.GPU_MODE],
        "sensor": [*sensor.SENSORS, *sensor.GPU_SENSORS],
        "switch": [switch.PIN],
    }
    assert set(descriptions) == {str(p) for p in PLATFORMS}
    for platform, items in descriptions.items():
        for description in items:
            assert description.translation_key in EN["entity"][platform], description.key
            if getattr(description, "device_class", None) is None:
                assert description.translation_key in icons[platform], description.key


def test_services_yaml_fields_are_all_translated() -> None:
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text())
    icons = json.loads((COMPONENT / "icons.json").read_text())["services"]

    assert services.keys() == EN["services"].keys() == icons.keys()
    for name, service in services.items():
        assert service["fields"].keys() == EN["services"][name]["fields"].keys()


def test_quality_scale_has_no_open_rule() -> None:
    rules = yaml.safe_load((COMPONENT / "quality_scale.yaml").read_text())["rules"]

    assert {"async-dependency", "inject-websession", "strict-typing", "discovery", "repair-issues"} <= rules.keys()
    for name, rule in rules.items():
        status = rule if isinstance(rule, str) else rule["status"]
        assert status in ("done", "exempt"), name
        if status == "exempt":
            assert rule["comment"].strip(), name


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_brand_images_are_pngs_of_the_expected_size() -> None:
    assert _png_size(COMPONENT / "brand" / "icon.png") == (256, 256)
    assert _png_size(COMPONENT / "brand" / "icon@2x.png") == (512, 512)
    assert _png_size(COMPONENT / "brand" / "logo.png")[1] == 256


async def test_home_assistant_loads_the_integration_and_its_translations(hass: HomeAssistant) -> None:
    integration = await async_get_integration(hass, DOMAIN)
    names = await async_get_translations(hass, "en", "entity", {DOMAIN})

    assert integration.version is not None
    assert names[f"component.{DOMAIN}.entity.select.gpu_mode.name"] == "GPU mode"
