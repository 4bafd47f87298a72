"""Configuration: defaults for every key, errors that name the key, the example file, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hal0_bridge.config import ConfigError, build, load

ROOT = Path(__file__).resolve().parents[2]


def test_no_config_gives_working_defaults() -> None:
    cfg = build({})
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.comfyui.url == "http://127.0.0.1:8188"
    assert cfg.image.default_model == "sdxl-turbo"
    assert cfg.image.default_size == "1024x1024"
    assert cfg.image.idle_restore_minutes == 60
    assert cfg.mqtt.enabled is False and cfg.mqtt.base_topic == "hal0"
    assert cfg.mqtt.discovery is False and cfg.mqtt.discovery_prefix == "homeassistant"
    assert cfg.slots == {} and cfg.img_slot is None
    assert cfg.image.cache_dir == cfg.server.state_dir / "cache"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"server": {"port": "eighty"}}, "server.port"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"comfyui": {"url": "ftp://x"}}, "comfyui.url"),
        ({"comfyui": {"render_timeout": -1}}, "comfyui.render_timeout"),
        ({"image": {"default_size": "big"}}, "image.default_size"),
        ({"mqtt": {"protocol": "4"}}, "mqtt.protocol"),
        ({"mqtt": {"base_topic": "hal0/#"}}, "mqtt.base_topic"),
        ({"slots": {"a": {"group": "gpu"}}}, "slots.a.group"),
        ({"models": {"m": {"template": "t.j2", "steps": 0}}}, "models.m.steps"),
    ],
)
def test_bad_value_names_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(raw)
    assert str(info.value).startswith(f"{key}:")


def test_extra_keys_are_allowed() -> None:
    cfg = build({"server": {"future_option": 1}, "new_section": {"x": 1}})
    assert cfg.server.port == 8080


def test_slots_need_exactly_one_img_slot() -> None:
    llm = {"group": "llm", "backend": "process", "command": ["true"]}
    with pytest.raises(ConfigError, match="exactly one"):
        build({"slots": {"a": llm}})
    with pytest.raises(ConfigError, match="exactly one"):
        build({"slots": {"a": {**llm, "group": "img"}, "b": {**llm, "group": "img"}}})


def test_process_slot_needs_a_command() -> None:
    with pytest.raises(ConfigError, match=r"slots\.img\.command"):
        build({"slots": {"img": {"group": "img", "backend": "process"}}})


def test_systemd_unit_defaults_to_the_template_instance() -> None:
    cfg = build({"slots": {"img": {"group": "img"}}})
    assert cfg.slots["img"].unit == "hal0-slot@img.service"


def test_example_config_is_valid_and_matches_the_defaults() -> None:
    assert load(ROOT / "examples" / "hal0-bridge.toml").to_dict() == build({}).to_dict()


def test_missing_file_and_bad_toml_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)


def test_environment_variable_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 9999\n")
    monkeypatch.setenv("HAL0_BRIDGE_CONFIG", str(path))
    assert load().server.port == 9999


def test_print_config_redacts_secrets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[server]\ntoken = "s3cret"\n[mqtt]\nhost = "b"\npassword = "pw"\n')
    out = subprocess.run(
        [sys.executable, "-m", "hal0_bridge", "--config", str(path), "--print-config"],
        capture_output=True, text=True, check=True,
    ).stdout
    data = json.loads(out)
    assert data["server"]["token"] == "**redacted**"
    assert data["mqtt"]["password"] == "**redacted**"
    assert "s3cret" not in out and "pw\"" not in out


def test_cli_rejects_a_bad_file_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[comfyui]\nurl = 5\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hal0_bridge", "--config", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "comfyui.url" in proc.stderr
