"""One dispatcher for every command, whoever sends it (REST route, MQTT topic, MQTT request).

Body validation and the order of checks live here once, so ``POST /api/comfyui/switchover`` and
``hal0/comfyui/mode/set`` can never disagree. Every method returns plain JSON-able data or raises
:class:`~hal0_bridge.errors.ApiError`.
"""

from __future__ import annotations

from typing import Any

from . import API_VERSION, __version__, errors
from .comfyui.errors import ComfyUIError
from .comfyui.facade import ComfyUI
from .config import Config
from .errors import ApiError
from .gpu.arbiter import Arbiter
from .identity import Identity
from .images.answers import Rendered
from .images.catalogue import Catalogue
from .images.edit_request import form_body
from .images.inputs import check_edit
from .images.partials import PartialSink
from .images.request import ImageRequest, with_source
from .images.request import parse as parse_image_request
from .images.service import ImageService
from .mqtt.setting import DiscoverySetting
from .status import Mode, StatusHub

MODES = ("generation", "inference")
SWITCH_FIELDS = frozenset({"mode", "force", "pin"})
PIN_FIELDS = frozenset({"pinned"})
NO_ARBITER = "no img slot is configured, so there is no GPU arbiter"


def _refuse_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    """A mistyped field names itself (422 ``request.unknown_field``), never a silent default."""
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(
            errors.UNKNOWN_FIELD, f"unknown field {unknown[0]!r}", param=unknown[0], details={"allowed": sorted(known)}
        )


def parse_switch_body(body: Any) -> tuple[Mode, bool, bool | None]:
    """``{mode, force?, pin?}``: a bad shape or value is 422 ``comfyui.invalid_mode`` naming the field, an
    unknown field 422 ``request.unknown_field``."""
    if not isinstance(body, dict):
        raise ApiError(errors.INVALID_MODE, "body must be a JSON object like {\"mode\": \"generation\"}")
    _refuse_unknown(body, SWITCH_FIELDS)
    mode = body.get("mode")
    if mode not in MODES:
        raise ApiError(
            errors.INVALID_MODE,
            f"mode must be \"generation\" or \"inference\", got {mode!r}",
            param="mode",
            details={"allowed": list(MODES)},
        )
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ApiError(errors.INVALID_MODE, "force must be true or false", param="force")
    pin = body.get("pin")
    if pin is not None and not isinstance(pin, bool):
        raise ApiError(errors.INVALID_MODE, "pin must be true or false", param="pin")
    if pin and mode != "generation":
        raise ApiError(errors.INVALID_MODE, "pin only applies to generation mode", param="pin")
    return ("generation" if mode == "generation" else "inference"), force, pin


def parse_discovery_body(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool) or set(body) - {"enabled"}:
        raise ApiError(
            errors.INVALID_DISCOVERY, "body must be {\"enabled\": true} or {\"enabled\": false}", param="enabled"
        )
    enabled: bool = body["enabled"]
    return enabled


def parse_pin_body(body: Any) -> bool:
    if isinstance(body, dict):
        _refuse_unknown(body, PIN_FIELDS)
    if not isinstance(body, dict) or not isinstance(body.get("pinned"), bool):
        raise ApiError(errors.INVALID_PIN, "body must be {\"pinned\": true} or {\"pinned\": false}", param="pinned")
    return bool(body["pinned"])


class Commands:
    def __init__(
        self,
        config: Config,
        hub: StatusHub,
        catalogue: Catalogue,
        images: ImageService,
        comfy: ComfyUI,
        arbiter: Arbiter | None,
        *,
        identity: Identity | None = None,
        discovery: DiscoverySetting | None = None,
    ) -> None:
        self._config = config
        self._identity = identity
        self._discovery = discovery
        self._hub = hub
        self._catalogue = catalogue
        self._images = images
        self._comfy = comfy
        self._arbiter = arbiter

    def info(self) -> dict[str, Any]:
        """Who this bridge is and what it can do; never secrets (it is served without auth)."""
        capabilities = ["images", "events"]
        if self._arbiter is not None:
            capabilities.append("arbiter")
        if any(s.group == "llm" for s in self._config.slots.values()):
            capabilities.append("llm")
        if self._config.mqtt.enabled:
            capabilities.append("mqtt")
        server = self._config.server
        host = self._identity.host if self._identity else server.host
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        return {
            "name": "hal0-bridge",
            "version": __version__,
            "api_version": API_VERSION,
            "node_id": self._config.node_id,
            "hostname": self._identity.hostname if self._identity else self._config.node_id,
            "api_url": server.public_url or f"http://{host}:{server.port}",
            "auth_required": bool(server.token),
            "models": self.models(),
            "capabilities": capabilities,
            "mqtt": {
                "enabled": self._config.mqtt.enabled,
                "base_topic": self._config.mqtt.base_topic,
                "commands": self._config.mqtt.commands,
                "discovery": self._discovery.enabled if self._discovery else self._config.mqtt.discovery,
            },
        }

    def models(self) -> list[dict[str, Any]]:
        return [
            {
                "id": spec.name,
                "object": "model",
                "created": 0,
                "owned_by": "hal0",
                "kind": "image",
                "aliases": list(spec.aliases),
                "description": spec.description,
                "size": f"{spec.size[0]}x{spec.size[1]}" if spec.size else self._config.image.default_size,
                "steps": spec.steps,
            }
            for spec in self._catalogue.models()
        ]

    async def status(self) -> dict[str, Any]:
        return self._hub.status.to_dict()

    async def switchover(self, body: Any, *, trigger: str = "api") -> tuple[int, dict[str, Any]]:
        mode, force, pin = parse_switch_body(body)
        if self._arbiter is None:  # nothing to switch: a write path never pretends (issue 10)
            raise ApiError(errors.ARBITER_UNAVAILABLE, NO_ARBITER)
        return await self._arbiter.request_switch(mode, force=force, pin=pin, trigger=trigger)

    async def pin(self, body: Any) -> dict[str, Any]:
        pinned = parse_pin_body(body)
        if self._arbiter is None:
            raise ApiError(errors.ARBITER_UNAVAILABLE, NO_ARBITER)
        return {"pinned": await self._arbiter.set_pin(pinned)}

    async def generate(self, body: Any) -> dict[str, Any]:
        """A generation's JSON answer (REST without ``stream``, MQTT's ``hal0/request/generate``)."""
        return await self._images.generate(self.image_request(body))

    def image_request(self, body: Any) -> ImageRequest:
        return parse_image_request(body, self._catalogue, self._config.image)

    async def edit_request(self, fields: dict[str, list[str]], files: dict[str, list[Any]]) -> ImageRequest:
        """An edit form, checked: its fields first, then its image and mask (Pillow, in a thread)."""
        form = form_body(fields, files)
        request = parse_image_request(form.body, self._catalogue, self._config.image, edit=True)
        source = await check_edit(form.image, form.mask, self._config.image.max_side)
        return with_source(request, source)

    async def render_image(self, request: ImageRequest, on_partial: PartialSink | None = None) -> Rendered:
        """Run a checked generation or edit; ``on_partial`` gets a stream's partial images."""
        return await self._images.render(request, on_partial)

    async def mqtt_discovery(self, body: Any) -> dict[str, Any]:
        """Turn the bridge's own Home Assistant MQTT discovery on or off; kept across restarts."""
        enabled = parse_discovery_body(body)
        if not self._config.mqtt.enabled or self._discovery is None:
            raise ApiError(errors.MQTT_DISABLED, "MQTT is off ([mqtt] host is empty), so there is no MQTT discovery")
        await self._discovery.set(enabled)
        return {"enabled": self._discovery.enabled, "source": self._discovery.source}

    async def cancel(self) -> dict[str, Any]:
        """Drop pending renders and interrupt the running one (what "cancel renders" means in ComfyUI)."""
        queue = self._hub.status.queue
        try:
            await self._comfy.client.clear_queue()
            await self._comfy.client.interrupt()
        except ComfyUIError as err:
            raise err.to_api_error() from err
        return {"status": "cancelled", "dropped_pending": queue.pending, "interrupted": queue.running}
