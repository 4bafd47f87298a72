"""Configuration: one TOML file validated by a voluptuous schema into typed dataclasses.

Every key has a default, so an empty file (or none) gives a working daemon on 127.0.0.1:8080.
Extra keys are allowed (forward compatibility, comments-as-keys), but a known key with a bad value
stops start-up with a message naming the key, e.g. ``comfyui.url: expected a URL``.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from .redact import REDACTED, redact_argv, redact_values

_LOGGER = logging.getLogger(__name__)
ENV_CONFIG = "HAL0_BRIDGE_CONFIG"
SIZE_RE = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
DEFAULT_PORTS = {"http": 80, "https": 443}


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key."""


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value):
        raise vol.Invalid("expected an http(s) URL")
    return value.rstrip("/")


def _size(value: Any) -> str:
    if not isinstance(value, str) or not SIZE_RE.match(value):
        raise vol.Invalid("expected WIDTHxHEIGHT, e.g. 1024x1024")
    return value


def _positive_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise vol.Invalid("expected a positive number")
    return float(value)


def _int(min: int | None = None, max: int | None = None) -> Callable[[Any], int]:
    """An integer key. ``true``/``false`` are refused: bool is an int in Python, so ``port = true``
    would otherwise bind port 1. Every integer key uses this one check."""

    def check(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise vol.Invalid("expected an integer")

    validator: Callable[[Any], int] = vol.All(check, vol.Range(min=min, max=max))
    return validator


def _number(min: float | None = None, max: float | None = None) -> Callable[[Any], int | float]:
    """An integer or float key; booleans are refused (see :func:`_int`)."""

    def check(value: Any) -> int | float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        raise vol.Invalid("expected a number")

    validator: Callable[[Any], int | float] = vol.All(check, vol.Range(min=min, max=max))
    return validator


def normalize_origin(text: str) -> str:
    """``scheme://host[:port]`` in the form browsers send in ``Origin`` (lower case, default port
    dropped, IPv6 in brackets); ValueError for anything else (paths, user info, ``null``)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not an origin") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r} is not an origin like http://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{text!r} is not an origin: no path, query or fragment")
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def _origin(value: Any) -> str:
    if not isinstance(value, str):
        raise vol.Invalid("expected an origin like \"http://host:port\"")
    try:
        return normalize_origin(value)
    except ValueError as err:
        raise vol.Invalid(str(err)) from None


_Port = _int(1, 65535)
_Str = vol.Coerce(str)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token


def _headers(value: Any) -> dict[str, str]:
    """Headers for a slot. A line break would end a header early and let the rest pass as a header
    (or a request) of its own, so it is refused here, where the value is written, not where it is sent."""
    if not isinstance(value, dict):
        raise vol.Invalid("expected a table of header names and values")
    headers: dict[str, str] = {}
    for name, raw in value.items():
        text = str(raw)
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise vol.Invalid(f"{name!r} is not an HTTP header name (letters, digits and -)")
        if any(c in text for c in "\r\n\0"):
            raise vol.Invalid(f"the value of {name} must not hold a line break or NUL")
        headers[name] = text
    return headers

SERVER_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default="127.0.0.1"): str,
        vol.Optional("port", default=8080): _int(0, 65535),
        vol.Optional("token", default=""): str,
        vol.Optional("public_url", default=""): vol.Any("", _url),
        vol.Optional("state_dir", default=""): str,
        vol.Optional("max_body_bytes", default=256 * 1024): _int(1024),
        vol.Optional("sse_ping_interval", default=15.0): _positive_float,
        # browser origins (scheme://host[:port]) allowed besides the bridge's own; see docs/security.md
        vol.Optional("allowed_origins", default=list): [_origin],
        # how long an image URL handed out while server.token is set stays valid (seconds)
        vol.Optional("signed_url_ttl", default=86400): _int(60, 366 * 86400),
        # advertise the API over mDNS; None = on for non-loopback binds
        vol.Optional("zeroconf", default=None): vol.Any(None, bool),
    },
    extra=vol.ALLOW_EXTRA,
)

COMFYUI_SCHEMA = vol.Schema(
    {
        vol.Optional("url", default="http://127.0.0.1:8188"): _url,
        # one short timeout for probes and small calls, one for the whole render
        vol.Optional("connect_timeout", default=2.0): _positive_float,
        vol.Optional("request_timeout", default=10.0): _positive_float,
        vol.Optional("probe_interval", default=2.0): _positive_float,
        vol.Optional("probe_timeout", default=1.0): _positive_float,
        vol.Optional("render_timeout", default=300.0): _positive_float,
        # no websocket message for this long during a render -> poll /history
        vol.Optional("ws_silence_timeout", default=5.0): _positive_float,
        vol.Optional("history_poll_interval", default=1.0): _positive_float,
        # ComfyUI's temp directory as the bridge sees it: renders land there and the bridge removes each
        # one once cached ("" = from ComfyUI's own --temp-directory / --base-directory when that path exists)
        vol.Optional("temp_dir", default=""): str,
    },
    extra=vol.ALLOW_EXTRA,
)

IMAGE_SCHEMA = vol.Schema(
    {
        vol.Optional("default_model", default="sdxl-turbo"): str,
        vol.Optional("default_size", default="1024x1024"): _size,
        vol.Optional("idle_restore_minutes", default=60.0): _number(0),
        vol.Optional("max_n", default=8): _int(1, 64),
        vol.Optional("max_side", default=4096): _int(64, 16384),
        vol.Optional("cache_dir", default=""): str,
        vol.Optional("cache_max_images", default=200): _int(1),
        vol.Optional("cache_max_bytes", default=512 * 1024 * 1024): _int(1024),
        vol.Optional("template_dir", default=""): str,
        # largest image (or mask) accepted by /v1/images/edits
        vol.Optional("max_upload_bytes", default=20 * 1024 * 1024): _int(1024),
        # edits staged in ComfyUI at once: each owns a fixed pair of file names in ComfyUI's temp folder
        # (overwritten by the next edit that uses them), which bounds the disk uploads take
        vol.Optional("edit_slots", default=4): _int(1, 64),
    },
    extra=vol.ALLOW_EXTRA,
)

MQTT_SCHEMA = vol.Schema(
    {
        vol.Optional("host", default=""): str,
        vol.Optional("port", default=1883): _Port,
        vol.Optional("username", default=""): str,
        vol.Optional("password", default=""): str,
        vol.Optional("tls", default=False): bool,
        vol.Optional("ca_file", default=""): str,
        vol.Optional("certfile", default=""): str,
        vol.Optional("keyfile", default=""): str,
        vol.Optional("tls_insecure", default=False): bool,
        vol.Optional("client_id", default=""): str,
        vol.Optional("keepalive", default=60): _int(5, 65535),
        vol.Optional("protocol", default="3.1.1"): vol.In(["3.1.1", "5"]),
        vol.Optional("base_topic", default="hal0"): vol.All(str, vol.Match(r"^[^#+\s]+$")),
        vol.Optional("discovery", default=False): bool,
        vol.Optional("discovery_prefix", default="homeassistant"): vol.All(
            str, vol.Match(r"^[^#+\s]+$")
        ),
        vol.Optional("node_id", default=""): vol.All(str, vol.Match(r"^[A-Za-z0-9_-]*$")),
        # reconnect back-off (paho doubles the delay from min to max), seconds
        vol.Optional("reconnect_min_delay", default=1): _int(1),
        vol.Optional("reconnect_max_delay", default=30): _int(1),
        vol.Optional("connect_timeout", default=5.0): _positive_float,
        # a burst of snapshot/memory changes is published at most this often (discrete state: at once)
        vol.Optional("state_min_interval", default=0.2): _number(0),
        # how long stop() waits for the broker to acknowledge "offline"
        vol.Optional("stop_timeout", default=3.0): _positive_float,
        vol.Optional("max_queued_messages", default=1000): _int(1),
        # "read_only": no command or request topics are subscribed (MQTT is then status only)
        vol.Optional("commands", default="all"): vol.In(["all", "read_only"]),
    },
    extra=vol.ALLOW_EXTRA,
)

SLOT_SCHEMA = vol.Schema(
    {
        vol.Required("group"): vol.In(["llm", "img"]),
        vol.Optional("backend", default="systemd"): vol.In(["systemd", "process", "container"]),
        vol.Optional("unit", default=""): str,
        vol.Optional("systemd_user", default=False): bool,
        vol.Optional("command", default=list): [_Str],
        vol.Optional("env", default=dict): {str: _Str},
        vol.Optional("cwd", default=""): str,
        vol.Optional("url", default=""): vol.Any("", _url),
        # readiness: GET url+ready_path answers 200 ("" = process/unit state only)
        vol.Optional("ready_path", default=""): str,
        vol.Optional("ready_timeout", default=120.0): _positive_float,
        vol.Optional("stop_timeout", default=30.0): _positive_float,
        vol.Optional("drain_timeout", default=30.0): _positive_float,
        # how to see in-flight work of an llm slot: llama.cpp GET /slots, or not at all
        vol.Optional("inflight", default="slots"): vol.In(["slots", "none"]),
        # an llm slot the arbiter has no saved state for runs in inference mode when this is true;
        # unset = true for slots the bridge runs itself (process, container), false for systemd units
        vol.Optional("autostart", default=None): vol.Any(None, bool),
        # one readiness / in-flight / state probe; how often slot state is refreshed for status
        vol.Optional("probe_timeout", default=1.0): _positive_float,
        vol.Optional("poll_interval", default=2.0): _positive_float,
        # llm slots: the model names this slot serves (default: what its /v1/models says)
        vol.Optional("models", default=list): [str],
        # HTTP headers sent with every request to the slot (e.g. Authorization for --api-key)
        vol.Optional("headers", default=dict): _headers,
        # backend "container": podman/docker container of this slot
        vol.Optional("runtime", default="podman"): vol.In(["podman", "docker"]),
        vol.Optional("image", default=""): str,
        vol.Optional("name", default=""): str,
        vol.Optional("args", default=list): [_Str],
        vol.Optional("create", default=True): bool,
        # backend "systemd" running a container: read the container's own state
        vol.Optional("container_name", default=""): str,
        # process backend: <state_dir>/slots/NAME.log is rotated past this size, keeping this many old ones
        vol.Optional("log_max_bytes", default=10 * 1024 * 1024): _int(4096),
        vol.Optional("log_backups", default=3): _int(1, 20),
    },
    extra=vol.ALLOW_EXTRA,
)

# Keys left out stay None: a model named like a built-in inherits them from it, any other model gets
# the catalogue's defaults (template and checkpoint are then required; see catalogue.spec_from_config).
MODEL_SCHEMA = vol.Schema(
    {
        vol.Optional("template"): str,
        # templates for /v1/images/edits: a source image (img2img), and a source with a mask (inpaint)
        vol.Optional("img2img_template"): str,
        vol.Optional("inpaint_template"): str,
        vol.Optional("checkpoint"): str,
        vol.Optional("steps"): _int(1, 200),
        vol.Optional("cfg"): _number(0, 100),
        vol.Optional("sampler"): str,
        vol.Optional("scheduler"): str,
        vol.Optional("size"): _size,
        vol.Optional("aliases"): [str],
        vol.Optional("description"): str,
    },
    extra=vol.ALLOW_EXTRA,
)

_NAME = vol.Match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
BRIDGE_RUN_BACKENDS = ("process", "container")  # slot backends whose process the bridge itself runs
# podman and docker accept container names matching this (docker: "[a-zA-Z0-9][a-zA-Z0-9_.-]")
_CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

LLM_SCHEMA = vol.Schema(
    {
        # in generation mode, unpinned, an LLM request switches the GPU to inference
        vol.Optional("auto_switch", default=True): bool,
        # how long an LLM request waits for the GPU (a switch, a starting slot) before it gives up
        vol.Optional("wait_timeout", default=300.0): _positive_float,
        # LLM requests that may wait for the GPU at once; beyond it 429 llm.queue_full
        vol.Optional("queue_max", default=64): _int(1),
        # connecting to an LLM slot (the answer itself is not bounded: a generation takes what it takes)
        vol.Optional("connect_timeout", default=5.0): _positive_float,
        # largest LLM request body (long chat histories, embedding batches); beyond it 413
        vol.Optional("max_body_bytes", default=16 * 1024 * 1024): _int(1024),
    },
    extra=vol.ALLOW_EXTRA,
)

ARBITER_SCHEMA = vol.Schema(
    {
        # a mode is held at least this long before demand may switch it away (no thrash)
        vol.Optional("min_mode_seconds", default=30.0): _number(0),
        # how long a switch to inference waits for ComfyUI to really let go of the GPU (then: img slot restart)
        vol.Optional("release_timeout", default=60.0): _positive_float,
        # with amdgpu sysfs: released once GTT use fell by this share of what it was when the switch began...
        vol.Optional("release_gtt_drop", default=0.5): _number(0.01, 1),
        # ...or once it has not fallen for this many seconds
        vol.Optional("release_settle", default=2.0): _positive_float,
        # a hung ComfyUI: after this many failed idle-restore switches (0 = never) ...
        vol.Optional("hung_idle_attempts", default=3): _int(0),
        # ... or this long unreachable in generation mode while its slot runs (0 = never), the img slot
        # is restarted and the GPU goes back to inference
        vol.Optional("hung_unreachable_minutes", default=10.0): _number(0),
        # a slot that dies by itself is restarted after this delay, doubling up to the max
        vol.Optional("restart_backoff", default=1.0): _positive_float,
        vol.Optional("restart_backoff_max", default=60.0): _positive_float,
    },
    extra=vol.ALLOW_EXTRA,
)

TELEMETRY_SCHEMA = vol.Schema(
    {
        # gauges are published at this resolution: GTT/RAM in GiB, GPU load in %, temperature in °C,
        # power in W; a change of at least one step goes out at once ...
        vol.Optional("memory_step_gib", default=0.01): _positive_float,
        vol.Optional("busy_step", default=5.0): _positive_float,
        vol.Optional("temperature_step", default=1.0): _positive_float,
        vol.Optional("power_step", default=1.0): _positive_float,
        # ... smaller drift at most this often (seconds)
        vol.Optional("min_interval", default=60.0): _number(0),
        # how often GPU load, temperature and power are read from amdgpu sysfs
        vol.Optional("gpu_interval", default=5.0): _positive_float,
        # where the amdgpu cards are (GTT gauge and GPU telemetry)
        vol.Optional("sysfs_root", default="/sys/class/drm"): str,
    },
    extra=vol.ALLOW_EXTRA,
)

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional("server", default=dict): SERVER_SCHEMA,
        vol.Optional("comfyui", default=dict): COMFYUI_SCHEMA,
        vol.Optional("image", default=dict): IMAGE_SCHEMA,
        vol.Optional("mqtt", default=dict): MQTT_SCHEMA,
        vol.Optional("llm", default=dict): LLM_SCHEMA,
        vol.Optional("arbiter", default=dict): ARBITER_SCHEMA,
        vol.Optional("telemetry", default=dict): TELEMETRY_SCHEMA,
        vol.Optional("slots", default=dict): {_NAME: SLOT_SCHEMA},
        vol.Optional("models", default=dict): {_NAME: MODEL_SCHEMA},
    },
    extra=vol.ALLOW_EXTRA,
)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str
    port: int
    token: str
    public_url: str
    state_dir: Path
    max_body_bytes: int
    sse_ping_interval: float
    allowed_origins: tuple[str, ...] = ()
    zeroconf: bool | None = None
    signed_url_ttl: int = 86400

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class ComfyConfig:
    url: str
    connect_timeout: float
    request_timeout: float
    probe_interval: float
    probe_timeout: float
    render_timeout: float
    ws_silence_timeout: float
    history_poll_interval: float
    temp_dir: str = ""


@dataclass(frozen=True, slots=True)
class ImageConfig:
    default_model: str
    default_size: str
    idle_restore_minutes: float
    max_n: int
    max_side: int
    cache_dir: Path
    cache_max_images: int
    cache_max_bytes: int
    template_dir: Path | None
    max_upload_bytes: int = 20 * 1024 * 1024
    edit_slots: int = 4


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    username: str
    password: str
    tls: bool
    ca_file: str
    certfile: str
    keyfile: str
    tls_insecure: bool
    client_id: str
    keepalive: int
    protocol: str
    base_topic: str
    discovery: bool
    discovery_prefix: str
    node_id: str
    reconnect_min_delay: int = 1
    reconnect_max_delay: int = 30
    connect_timeout: float = 5.0
    state_min_interval: float = 0.2
    stop_timeout: float = 3.0
    max_queued_messages: int = 1000
    commands: str = "all"

    @property
    def enabled(self) -> bool:
        return bool(self.host)


@dataclass(frozen=True, slots=True)
class SlotConfig:
    name: str
    group: str
    backend: str
    unit: str
    systemd_user: bool
    command: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    url: str
    ready_path: str
    ready_timeout: float
    stop_timeout: float
    drain_timeout: float
    inflight: str
    autostart: bool = False
    probe_timeout: float = 1.0
    poll_interval: float = 2.0
    models: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    runtime: str = "podman"
    image: str = ""
    args: tuple[str, ...] = ()
    create: bool = True
    # the container: key ``name`` (backend "container", default hal0-slot-NAME) or ``container_name``
    # (backend "systemd" running a container; empty = the unit's state only)
    container_name: str = ""
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 3


@dataclass(frozen=True, slots=True)
class LlmConfig:
    auto_switch: bool = True
    wait_timeout: float = 300.0
    queue_max: int = 64
    connect_timeout: float = 5.0
    max_body_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ArbiterConfig:
    min_mode_seconds: float = 30.0
    release_timeout: float = 60.0
    release_gtt_drop: float = 0.5
    release_settle: float = 2.0
    hung_idle_attempts: int = 3
    hung_unreachable_minutes: float = 10.0
    restart_backoff: float = 1.0
    restart_backoff_max: float = 60.0


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    memory_step_gib: float = 0.01
    busy_step: float = 5.0
    temperature_step: float = 1.0
    power_step: float = 1.0
    min_interval: float = 60.0
    gpu_interval: float = 5.0
    sysfs_root: Path = Path("/sys/class/drm")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """``[models.NAME]`` as written: None where the file does not set the key."""

    name: str
    template: str | None = None
    img2img_template: str | None = None
    inpaint_template: str | None = None
    checkpoint: str | None = None
    steps: int | None = None
    cfg: float | None = None
    sampler: str | None = None
    scheduler: str | None = None
    size: str | None = None
    aliases: tuple[str, ...] | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig
    comfyui: ComfyConfig
    image: ImageConfig
    mqtt: MqttConfig
    slots: dict[str, SlotConfig] = field(default_factory=dict)
    llm: LlmConfig = field(default_factory=LlmConfig)
    arbiter: ArbiterConfig = field(default_factory=ArbiterConfig)
    models: dict[str, ModelConfig] = field(default_factory=dict)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)

    @property
    def node_id(self) -> str:
        """``[mqtt] node_id``; empty until start-up resolved it (:meth:`with_node_id`)."""
        return self.mqtt.node_id

    def with_node_id(self, node_id: str) -> Config:
        return replace(self, mqtt=replace(self.mqtt, node_id=node_id))

    @property
    def img_slot(self) -> SlotConfig | None:
        return next((s for s in self.slots.values() if s.group == "img"), None)

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """The effective configuration, as printed by ``hal0-bridge --print-config``.

        Redacted (rules in :mod:`hal0_bridge.redact`): the token, the MQTT password, every slot
        ``env`` and ``headers`` value, and the value of every key-like ``command``/``args`` flag.
        """
        data = _plain(asdict(self))
        if redact:
            for section, key in (("server", "token"), ("mqtt", "password")):
                if data[section][key]:
                    data[section][key] = REDACTED
            for slot in data["slots"].values():
                slot["env"] = redact_values(slot["env"])
                slot["headers"] = redact_values(slot["headers"])
                slot["command"] = redact_argv(slot["command"])
                slot["args"] = redact_argv(slot["args"])
        return data  # type: ignore[no-any-return]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    return {f.name: data[f.name] for f in fields(cls) if f.name in data}


def _default_state_dir() -> Path:
    # systemd's StateDirectory= sets STATE_DIRECTORY; otherwise follow the XDG base directory spec.
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"])
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "hal0-bridge"


def _check_slots(slots: dict[str, Any]) -> None:
    img = [name for name, s in slots.items() if s["group"] == "img"]
    if slots and len(img) != 1:
        raise ConfigError(f"slots: exactly one slot must have group = \"img\" (found {len(img)})")
    for name, s in slots.items():
        if s["backend"] == "process" and not s["command"]:
            raise ConfigError(f"slots.{name}.command: required for backend \"process\"")
        if s["backend"] == "container" and s["create"] and not s["image"]:
            raise ConfigError(f"slots.{name}.image: required for backend \"container\" with create = true")
        for key in ("name", "container_name"):
            if s[key] and not _CONTAINER_NAME.match(s[key]):
                raise ConfigError(f"slots.{name}.{key}: expected a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")


def _literal_keys(schema: Any) -> tuple[dict[str, Any], Any]:
    """A schema dict's fixed keys (name -> value schema) and its one pattern key's value, if any."""
    fixed: dict[str, Any] = {}
    pattern: Any = None
    for key, value in schema.items():
        name = key.schema if isinstance(key, vol.Marker) else key
        if isinstance(name, str):
            fixed[name] = value
        else:
            pattern = value
    return fixed, pattern


def unknown_keys(raw: Any, schema: Any = None, path: str = "") -> list[tuple[str, str | None]]:
    """Every key in ``raw`` the schema does not know, as (dotted path, closest known key or None).

    Extra keys are allowed (forward compatibility), but a typo like ``[sever]`` or ``prot = 8091``
    would otherwise be silently ignored, so start-up warns about each one.
    """
    schema = CONFIG_SCHEMA if schema is None else schema
    if isinstance(schema, vol.Schema):
        schema = schema.schema
    if not isinstance(schema, dict) or not isinstance(raw, dict):
        return []
    fixed, pattern = _literal_keys(schema)
    found: list[tuple[str, str | None]] = []
    for key, value in raw.items():
        where = f"{path}.{key}" if path else str(key)
        if key in fixed:
            found += unknown_keys(value, fixed[key], where)
        elif pattern is not None:
            found += unknown_keys(value, pattern, where)
        else:
            close = difflib.get_close_matches(str(key), list(fixed), n=1, cutoff=0.6)
            found.append((where, close[0] if close else None))
    return found


def warn_unknown_keys(raw: dict[str, Any]) -> list[str]:
    """Log one warning per unknown key (naming the closest known one) and return the messages."""
    messages = []
    for where, close in unknown_keys(raw):
        hint = f"; did you mean {close!r}?" if close else ""
        messages.append(f"{where}: unknown key, ignored{hint}")
        _LOGGER.warning("configuration: %s", messages[-1])
    return messages


def build(raw: dict[str, Any]) -> Config:
    """Validate a parsed TOML document and build the typed configuration."""
    try:
        data = CONFIG_SCHEMA(raw)
    except vol.MultipleInvalid as err:
        first = err.errors[0]
        path = ".".join(str(p) for p in first.path) or "(top level)"
        raise ConfigError(f"{path}: {first.msg}") from None
    _check_slots(data["slots"])

    srv = data["server"]
    state_dir = Path(srv["state_dir"]).expanduser() if srv["state_dir"] else _default_state_dir()
    server = ServerConfig(
        **{**_fields(ServerConfig, srv), "state_dir": state_dir, "allowed_origins": tuple(srv["allowed_origins"])}
    )
    img = data["image"]
    image = ImageConfig(
        **{
            **_fields(ImageConfig, img),
            "idle_restore_minutes": float(img["idle_restore_minutes"]),
            "cache_dir": Path(img["cache_dir"]).expanduser() if img["cache_dir"] else state_dir / "cache",
            "template_dir": Path(img["template_dir"]).expanduser() if img["template_dir"] else None,
        }
    )
    mq = data["mqtt"]
    # an empty node_id is resolved at start-up from state_dir (bridge/identity.py)
    mqtt = MqttConfig(**_fields(MqttConfig, mq))
    slots = {
        name: SlotConfig(
            **{
                **_fields(SlotConfig, s),
                "name": name,
                "command": tuple(s["command"]),
                "models": tuple(s["models"]),
                "args": tuple(s["args"]),
                "container_name": s["container_name"]
                or s["name"]
                or (f"hal0-slot-{name}" if s["backend"] == "container" else ""),
                "unit": s["unit"] or f"hal0-slot@{name}.service",
                "autostart": s["autostart"] if s["autostart"] is not None else s["backend"] in BRIDGE_RUN_BACKENDS,
            }
        )
        for name, s in data["slots"].items()
    }
    models = {
        name: ModelConfig(
            name=name,
            **{
                **_fields(ModelConfig, m),
                **({"cfg": float(m["cfg"])} if "cfg" in m else {}),
                **({"aliases": tuple(m["aliases"])} if "aliases" in m else {}),
            },
        )
        for name, m in data["models"].items()
    }
    return Config(
        server=server,
        comfyui=ComfyConfig(**_fields(ComfyConfig, data["comfyui"])),
        image=image,
        mqtt=mqtt,
        slots=slots,
        models=models,
        llm=LlmConfig(**_fields(LlmConfig, data["llm"])),
        telemetry=TelemetryConfig(
            **{
                **_fields(TelemetryConfig, data["telemetry"]),
                "min_interval": float(data["telemetry"]["min_interval"]),
                "sysfs_root": Path(data["telemetry"]["sysfs_root"]),
            }
        ),
        arbiter=ArbiterConfig(
            **{
                **_fields(ArbiterConfig, data["arbiter"]),
                **{k: float(data["arbiter"][k]) for k in ("min_mode_seconds", "release_gtt_drop", "hung_unreachable_minutes")},
            }
        ),
    )


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load ``path``, else ``$HAL0_BRIDGE_CONFIG``, else the built-in defaults."""
    chosen = path or os.environ.get(ENV_CONFIG)
    if not chosen:
        return build({})
    try:
        with open(chosen, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {chosen}") from None
    except IsADirectoryError:
        raise ConfigError(f"{chosen}: is a directory, not a config file") from None
    except OSError as err:
        raise ConfigError(f"{chosen}: cannot be read: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{chosen}: not valid TOML: {err}") from None
    config = build(raw)
    warn_unknown_keys(raw)
    return config
