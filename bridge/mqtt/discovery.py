"""Home Assistant MQTT discovery, device-based: one retained message describes every entity.

Off by default (``[mqtt] discovery``) so it never duplicates the custom integration's entities.
The entities only point at the bridge's own state and command topics (mqtt_topics), so HA reads
exactly what every other MQTT client reads. Validated against HA's own schema in the tests.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from .topics import Topics

GIB = 1024**3
MODES = ("inference", "generation")
ENGINE_STATES = ("generating", "running", "starting", "stopped")


def _gib(field: str) -> str:
    """A template that turns a byte count (or null) from the memory JSON into GiB (or unknown)."""
    return (
        f"{{{{ none if value_json.{field} is none "
        f"else (value_json.{field} / {GIB}) | round(2) }}}}"
    )


def _read_only_controls(topics: Topics, uid: Any) -> dict[str, dict[str, Any]]:
    """The GPU mode and the pin as read-only entities (their own unique ids: another platform)."""
    return {
        "mode_state": {
            "platform": "sensor",
            "name": "GPU mode",
            "unique_id": uid("mode_state"),
            "state_topic": topics.mode,
            "device_class": "enum",
            "options": list(MODES),
            "icon": "mdi:expansion-card",
        },
        "pinned_state": {
            "platform": "binary_sensor",
            "name": "Pin image mode",
            "unique_id": uid("pinned_state"),
            "state_topic": topics.pinned,
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:pin",
        },
    }


def discovery_payload(topics: Topics, info: dict[str, Any], *, read_only: bool = False) -> dict[str, Any]:
    """The device discovery config for ``topics.discovery`` (``info`` is Commands.info()).

    ``read_only`` (``mqtt.commands``): the bridge hears no command topic, so the mode and the pin are
    offered as a sensor and a binary sensor instead of a select and a switch that could do nothing.
    """
    node = topics.node_id

    def uid(key: str) -> str:
        return f"hal0_{node}_{key}"

    device: dict[str, Any] = {
        "identifiers": [f"hal0_bridge_{node}"],
        "name": f"hal0 GPU ({node})",
        "manufacturer": "hal0",
        "model": "hal0-bridge",
        "sw_version": str(info.get("version", __version__)),
    }
    api_url = info.get("api_url")
    if isinstance(api_url, str) and api_url.startswith(("http://", "https://")):
        device["configuration_url"] = api_url

    memory_sensors = {
        f"{field}": {
            "platform": "sensor",
            "name": label,
            "unique_id": uid(field),
            "state_topic": topics.memory,
            "value_template": _gib(field),
            "device_class": "data_size",
            "unit_of_measurement": "GiB",
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "entity_category": "diagnostic",
        }
        for field, label in (
            ("gtt_used", "GTT used"),
            ("gtt_total", "GTT total"),
            ("ram_used", "RAM used"),
            ("ram_total", "RAM total"),
        )
    }
    # amdgpu telemetry: diagnostic, off until a user turns them on (null payload = unknown)
    gpu_sensors = {
        key: {
            "platform": "sensor",
            "name": label,
            "unique_id": uid(key),
            "state_topic": topics.gpu,
            "value_template": f"{{{{ value_json.{field} if value_json else none }}}}",
            "unit_of_measurement": unit,
            "state_class": "measurement",
            "entity_category": "diagnostic",
            "enabled_by_default": False,
            **extra,
        }
        for key, field, label, unit, extra in (
            ("gpu_busy", "busy_percent", "GPU load", "%", {"icon": "mdi:gauge"}),
            ("gpu_temperature", "temperature_c", "GPU temperature", "°C", {"device_class": "temperature"}),
            ("gpu_power", "power_w", "GPU power", "W", {"device_class": "power"}),
        )
    }
    components: dict[str, dict[str, Any]] = {
        "mode": {
            "platform": "select",
            "name": "GPU mode",
            "unique_id": uid("mode"),
            "state_topic": topics.mode,
            "command_topic": topics.mode_set,
            "options": list(MODES),
            "icon": "mdi:expansion-card",
        },
        "pinned": {
            "platform": "switch",
            "name": "Pin image mode",
            "unique_id": uid("pinned"),
            "state_topic": topics.pinned,
            "command_topic": topics.pin_set,
            "payload_on": "ON",
            "payload_off": "OFF",
            "state_on": "ON",
            "state_off": "OFF",
            "icon": "mdi:pin",
        },
        "engine": {
            "platform": "sensor",
            "name": "Engine",
            "unique_id": uid("engine"),
            "state_topic": topics.engine,
            "device_class": "enum",
            "options": list(ENGINE_STATES),
            "icon": "mdi:engine",
        },
        "queue_running": {
            "platform": "sensor",
            "name": "Queue running",
            "unique_id": uid("queue_running"),
            "state_topic": topics.queue,
            "value_template": "{{ value_json.running }}",
            "state_class": "measurement",
            "icon": "mdi:play-box-multiple",
        },
        "queue_pending": {
            "platform": "sensor",
            "name": "Queue pending",
            "unique_id": uid("queue_pending"),
            "state_topic": topics.queue,
            "value_template": "{{ value_json.pending }}",
            "state_class": "measurement",
            "icon": "mdi:tray-full",
        },
        **memory_sensors,
        **(_read_only_controls(topics, uid) if read_only else {}),
        **gpu_sensors,
        **{
            f"llm_{key}": {
                "platform": "sensor",
                "name": name,
                "unique_id": uid(f"llm_{key}"),
                "state_topic": topics.llm_state,
                "value_template": f"{{{{ value_json.{key} }}}}",
                "state_class": "measurement",
                "icon": icon,
            }
            for key, name, icon in (("in_flight", "LLM requests in flight", "mdi:message-processing"),
                                    ("queued", "LLM requests waiting for the GPU", "mdi:message-badge"))
        },  # fmt: skip
        "switching": {
            "platform": "binary_sensor",
            "name": "Switching",
            "unique_id": uid("switching"),
            "state_topic": topics.switchover,
            "value_template": "{{ 'ON' if value_json.active else 'OFF' }}",
            "device_class": "running",
        },
    }
    if read_only:
        del components["mode"], components["pinned"]
    return {
        "device": device,
        "origin": {"name": "hal0-bridge", "sw_version": __version__},
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
        "components": components,
    }
