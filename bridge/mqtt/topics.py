"""Every MQTT topic the bridge uses, built from ``[mqtt] base_topic`` in one place.

The docs table (docs/mqtt.md), the discovery payload and the client all read these names, so a
topic can only be spelled one way. Base ``hal0`` gives e.g. ``hal0/comfyui/mode/set``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import MqttConfig

# Request/response actions understood on <base>/request/<action>.
ACTIONS = ("status", "info", "switchover", "pin", "generate", "cancel")

# Retained state topics below <base>/comfyui/, one per facet of the status snapshot.
STATE_FACETS = ("status", "mode", "engine", "pinned", "queue", "memory", "switchover")


@dataclass(frozen=True, slots=True)
class Topics:
    base: str
    discovery_prefix: str
    node_id: str

    @classmethod
    def from_config(cls, mqtt: MqttConfig) -> Topics:
        return cls(mqtt.base_topic.rstrip("/"), mqtt.discovery_prefix.rstrip("/"), mqtt.node_id)

    # availability and identity
    @property
    def availability(self) -> str:
        return f"{self.base}/availability"

    @property
    def info(self) -> str:
        return f"{self.base}/bridge/info"

    # retained state
    def state(self, facet: str) -> str:
        """``<base>/comfyui/<facet>``; facet ``status`` is the full snapshot as JSON."""
        if facet not in STATE_FACETS:
            raise ValueError(f"unknown state facet {facet!r}")
        return f"{self.base}/comfyui/{facet}"

    @property
    def status(self) -> str:
        return self.state("status")

    @property
    def mode(self) -> str:
        return self.state("mode")

    @property
    def engine(self) -> str:
        return self.state("engine")

    @property
    def pinned(self) -> str:
        return self.state("pinned")

    @property
    def queue(self) -> str:
        return self.state("queue")

    @property
    def memory(self) -> str:
        return self.state("memory")

    @property
    def switchover(self) -> str:
        return self.state("switchover")

    @property
    def llm_state(self) -> str:
        """``<base>/llm/state``: the LLM proxy's counts and models (status ``llm``), retained JSON."""
        return f"{self.base}/llm/state"

    @property
    def gpu(self) -> str:
        """GPU load, temperature and power (retained JSON, ``null`` without amdgpu telemetry)."""
        return f"{self.base}/gpu/telemetry"

    # commands (Home Assistant style "/set" topics)
    @property
    def mode_set(self) -> str:
        return f"{self.base}/comfyui/mode/set"

    @property
    def pin_set(self) -> str:
        return f"{self.base}/comfyui/pin/set"

    # request/response
    @property
    def request_prefix(self) -> str:
        return f"{self.base}/request/"

    @property
    def request_filter(self) -> str:
        """Subscription filter for every action (one topic level, so no nested names)."""
        return f"{self.base}/request/+"

    def request(self, action: str) -> str:
        return f"{self.base}/request/{action}"

    def response(self, action: str) -> str:
        return f"{self.base}/response/{action}"

    def action_of(self, topic: str) -> str | None:
        """The action of a request topic, or None when ``topic`` is not one."""
        if not topic.startswith(self.request_prefix):
            return None
        action = topic[len(self.request_prefix) :]
        return action if action and "/" not in action else None

    @property
    def response_prefix(self) -> str:
        return f"{self.base}/response/"

    def may_answer_on(self, topic: str) -> bool:
        """Whether an MQTT 5 response topic chosen by a requester is acceptable: only below
        ``<base>/response/``, never a wildcard.

        So a request can never make the bridge speak on another device's command topic, on Home
        Assistant's discovery tree or on our own state topics, and a broker ACL that lets clients
        read ``<base>/response/#`` covers every answer (docs/mqtt.md).
        """
        prefix = self.response_prefix
        return len(topic) > len(prefix) and topic.startswith(prefix) and not set(topic) & {"+", "#", "\0"}

    # events
    @property
    def event(self) -> str:
        return f"{self.base}/event"

    # Home Assistant
    @property
    def ha_status(self) -> str:
        """Where Home Assistant announces ``online`` after it (re)starts; we re-publish then."""
        return f"{self.discovery_prefix}/status"

    @property
    def discovery(self) -> str:
        """Device-based discovery config (one message for every entity of this bridge)."""
        return f"{self.discovery_prefix}/device/{self.node_id}/config"

    def command_topics(self, *, read_only: bool = False) -> tuple[str, ...]:
        """Everything the bridge subscribes to; ``mqtt.commands = "read_only"``: only HA's birth message."""
        if read_only:
            return (self.ha_status,)
        return (self.mode_set, self.pin_set, self.request_filter, self.ha_status)
