"""Configuration: defaults for every key, errors that name the key, the example file, the CLI."""

from __future__ import annotations

import json
import socket
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
        # a line break in a slot header would smuggle a second header (or request) to the slot
        ({"slots": {"a": {"group": "llm", "headers": {"Authorization": "Bearer k\r\nX-Evil: 1"}}}}, "slots.a.headers"),
        ({"slots": {"a": {"group": "llm", "headers": {"Bad Name": "x"}}}}, "slots.a.headers"),
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


# ------------------------------------------------------------------------------- issue 11: no nonsense


def _int_keys(data: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every integer-valued key of an effective config (booleans are not integers here)."""
    found = []
    for key, value in data.items():
        if isinstance(value, dict):
            found += _int_keys(value, (*path, key))
        elif isinstance(value, int) and not isinstance(value, bool):
            found.append((*path, key))
    return found


def _raw_with(path: tuple[str, ...], value: object) -> dict:
    raw: dict = {"slots": {"img": {"group": "img"}}, "models": {"m": {"template": "t.j2", "checkpoint": "c"}}}
    node = raw
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return raw


FULL = build(_raw_with(("models", "m", "steps"), 5)).to_dict()
INT_KEYS = _int_keys(FULL) + [("models", "m", "steps"), ("models", "m", "cfg"), ("image", "idle_restore_minutes"),
                              ("arbiter", "min_mode_seconds"), ("mqtt", "state_min_interval")]  # fmt: skip


@pytest.mark.parametrize("path", INT_KEYS, ids=".".join)
@pytest.mark.parametrize("value", [True, False])
def test_no_numeric_key_takes_a_boolean(path: tuple[str, ...], value: bool) -> None:
    """bool is an int in Python: ``port = true`` used to bind port 1."""
    with pytest.raises(ConfigError) as info:
        build(_raw_with(path, value))
    assert str(info.value).startswith(".".join(path) + ":")


def test_the_walk_found_the_integer_keys() -> None:
    assert {("server", "port"), ("mqtt", "port"), ("image", "max_n"), ("server", "signed_url_ttl")} <= set(INT_KEYS)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"server": {"allowed_origins": ["null"]}}, "server.allowed_origins.0"),
        ({"server": {"allowed_origins": ["http://a/path"]}}, "server.allowed_origins.0"),
        ({"server": {"allowed_origins": "http://a"}}, "server.allowed_origins"),
        ({"server": {"signed_url_ttl": 10}}, "server.signed_url_ttl"),
        ({"mqtt": {"commands": "none"}}, "mqtt.commands"),
    ],
)
def test_trust_keys_are_checked(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        build(raw)
    assert str(info.value).startswith(f"{key}:")


def test_allowed_origins_are_normalised() -> None:
    cfg = build({"server": {"allowed_origins": ["HTTP://Dash.LAN:80/", "https://x:8443"]}})
    assert cfg.server.allowed_origins == ("http://dash.lan", "https://x:8443")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hal0_bridge", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)  # fmt: skip


def one_line_exit_2(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hal0-bridge: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[image]\ndefault_model = "dall-e-3"\n', "image.default_model"),
        ('[server]\nhost = "0.0.0.0"\n', "server.token"),
        ("[server]\nport = true\n", "server.port"),
        ('[models.x]\ntemplate = "missing.json.j2"\ncheckpoint = "c.safetensors"\n', "models.x"),
    ],
    ids=["uncurated_default_model", "open_bind_without_token", "port_true", "missing_template"],
)
def test_print_config_runs_the_start_up_checks(tmp_path: Path, toml: str, key: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    one_line_exit_2(run_cli("--config", str(path), "--print-config"), key)
    one_line_exit_2(run_cli("--config", str(path)), key)  # and start-up says the same


def test_a_directory_as_config_is_one_line(tmp_path: Path) -> None:
    one_line_exit_2(run_cli("--config", str(tmp_path)), str(tmp_path), "directory")
    one_line_exit_2(run_cli("--config", str(tmp_path), "--print-config"), "directory")


def test_a_port_in_use_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = tmp_path / "c.toml"
        path.write_text(f'[server]\nport = {port}\nstate_dir = "{tmp_path / "state"}"\n')
        proc = run_cli("--config", str(path), "--log-level", "ERROR")
    one_line_exit_2(proc, "server.port", f"127.0.0.1:{port}", "in use")
    assert not (tmp_path / "state" / "cache").exists()  # failed before the bridge started anything


def test_unknown_keys_warn_with_the_closest_key_and_start_anyway(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[sever]\nport = 1\n[server]\nprot = 8091\n[slots.img]\ngroup = "img"\ncomand = ["x"]\n')
    proc = run_cli("--config", str(path), "--print-config")
    assert proc.returncode == 0, proc.stderr
    assert "sever: unknown key, ignored; did you mean 'server'?" in proc.stderr
    assert "server.prot: unknown key, ignored; did you mean 'port'?" in proc.stderr
    assert "slots.img.comand: unknown key, ignored; did you mean 'command'?" in proc.stderr
    assert json.loads(proc.stdout)["server"]["port"] == 8080


def test_known_keys_do_not_warn() -> None:
    from hal0_bridge.config import unknown_keys

    assert unknown_keys({"server": {"port": 1}, "slots": {"a": {"group": "img", "env": {"ANY_NAME": "x"}}}}) == []
    assert unknown_keys({"mqtt": {"x": 1}, "zzz": 2}) == [("mqtt.x", None), ("zzz", None)]


def test_print_config_redacts_slot_env_headers_and_key_arguments(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[slots.llm]\n"
        'group = "llm"\nbackend = "process"\n'
        'command = ["llama-server", "--api-key", "k-one", "--api-key=k-two", "-m", "model.gguf", "--hf-token", '
        '"k-three", "--port", "8081", "-k", "short-flag-value"]\n'
        'env = {HF_TOKEN = "k-four", HIP_VISIBLE_DEVICES = "0"}\n'
        'headers = {Authorization = "Bearer k-five"}\n'
        "[slots.img]\n"
        'group = "img"\nbackend = "container"\nimage = "comfy"\n'
        'args = ["-e", "API_KEY=k-six", "--secret", "k-seven", "--header", "Authorization: Bearer k-eight"]\n'
    )
    proc = run_cli("--config", str(path), "--print-config")
    assert proc.returncode == 0, proc.stderr
    for secret in ("k-one", "k-two", "k-three", "k-four", "k-five", "k-six", "k-seven", "k-eight"):
        assert secret not in proc.stdout, secret
    slots = json.loads(proc.stdout)["slots"]
    assert slots["llm"]["command"] == [
        "llama-server", "--api-key", "**redacted**", "--api-key=**redacted**", "-m", "model.gguf", "--hf-token",
        "**redacted**", "--port", "8081", "-k", "short-flag-value",
    ]  # fmt: skip
    assert slots["llm"]["env"] == {"HF_TOKEN": "**redacted**", "HIP_VISIBLE_DEVICES": "**redacted**"}
    assert slots["llm"]["headers"] == {"Authorization": "**redacted**"}
    assert slots["img"]["args"] == ["-e", "API_KEY=**redacted**", "--secret", "**redacted**", "--header",
                                    "Authorization: **redacted**"]  # fmt: skip
