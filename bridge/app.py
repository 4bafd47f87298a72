"""Wiring: builds every part from the config, starts them in order, stops them in reverse.

The only module that knows all the parts. ``create_app`` gives the aiohttp application (used by the
CLI and by tests); :class:`Bridge` owns the long-lived objects and their lifecycles.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from .comfyui.facade import ComfyUI
from .commands import Commands
from .config import Config, ConfigError
from .gpu.arbiter import Arbiter
from .gpu.engine import ComfyEngineControl
from .gpu.gate import DirectGate, GpuGate
from .gpu.memory import MemoryFilter, sysfs_gtt
from .gpu.slots.manager import SlotManager
from .gpu.telemetry import GpuTelemetry
from .http import cache as cache_routes
from .http import control, events, openai, openapi
from .http.mdns import MdnsAnnouncer, announce_enabled
from .http.server import BRIDGE_KEY, make_app
from .identity import Identity, resolve
from .images.cache import ImageCache
from .images.catalogue import Catalogue
from .images.service import ImageService
from .images.workflows import WorkflowRenderer
from .mqtt.setting import DiscoverySetting
from .status import StatusHub

if TYPE_CHECKING:
    pass

_LOGGER = logging.getLogger(__name__)


def check_security(config: Config) -> None:
    """Refuse to serve a network without a token: the API can stop LLMs and run renders."""
    server = config.server
    if not server.is_loopback and not server.token:
        raise ConfigError(
            f"server.token: required when server.host ({server.host}) is not a loopback address; "
            "set a long random token or bind to 127.0.0.1"
        )


class Bridge:
    def __init__(self, config: Config) -> None:
        check_security(config)
        self.config = config
        self.hub = StatusHub()
        self.catalogue = Catalogue.from_config(config)
        self.renderer = WorkflowRenderer(config.image.template_dir)
        self.renderer.check_models(self.catalogue.models())  # a broken template stops start-up
        self.cache = ImageCache(
            config.image.cache_dir,
            max_images=config.image.cache_max_images,
            max_bytes=config.image.cache_max_bytes,
        )
        telemetry = config.telemetry
        self.comfy = ComfyUI(
            config.comfyui,
            self.hub,
            gtt=sysfs_gtt(telemetry.sysfs_root),
            memory_filter=MemoryFilter(telemetry.memory_step_gib, telemetry.min_interval),
        )
        self.session: aiohttp.ClientSession | None = None
        self.slots: SlotManager | None = None
        self.arbiter: Arbiter | None = None
        self.mqtt = None  # created in start() when [mqtt] host is set
        self.images: ImageService | None = None
        self.gpu = GpuTelemetry(telemetry, self.hub, telemetry.sysfs_root)
        self.commands: Commands | None = None
        self.identity: Identity | None = None
        self.mdns: MdnsAnnouncer | None = None
        self.discovery = DiscoverySetting(config.mqtt.discovery, config.server.state_dir)
        self._gate: GpuGate = DirectGate()

    async def start(self) -> None:
        # first, before anything writes to state_dir: a first start is told from an upgrade by it
        identity = self.identity = await asyncio.to_thread(resolve, self.config.node_id, self.config.server)
        self.config = self.config.with_node_id(identity.node_id)
        await self.cache.open()
        if self.config.img_slot is not None:
            self.session = aiohttp.ClientSession()
            self.slots = SlotManager.from_config(self.config, self.hub, self.session)
            self.arbiter = Arbiter(self.config, self.hub, ComfyEngineControl(self.comfy.client), self.slots)
            self.comfy.set_img_slot_state(self.slots.img_state)
            self._gate = self.arbiter
        else:
            # Nothing to arbitrate: ComfyUI is the only GPU user (docs/decisions.md).
            self.hub.update(mode="generation")
        self.images = ImageService(self.config, self.hub, self.renderer, self.comfy, self.cache, self._gate)
        self.commands = Commands(
            self.config,
            self.hub,
            self.catalogue,
            self.images,
            self.comfy,
            self.arbiter,
            identity=self.identity,
            discovery=self.discovery,
        )
        await self.comfy.start()
        await self.gpu.start()
        if self.slots is not None and self.arbiter is not None:
            await self.slots.start()
            await self.arbiter.start()
        if self.config.mqtt.enabled:
            from .mqtt.bridge import MqttBridge  # paho is only imported when MQTT is on

            await self.discovery.load()
            self.mqtt = MqttBridge(self.config, self.hub, self.commands, discovery=self.discovery)
            await self.mqtt.start()
        if announce_enabled(self.config.server):
            if self.config.server.port:
                self.mdns = MdnsAnnouncer(self.config.server, identity)
                await self.mdns.start()
            else:
                _LOGGER.warning("zeroconf: server.port is 0 (a random port), so the API is not announced")

    async def stop(self) -> None:
        if self.mdns is not None:  # first: the goodbye goes out while the API still answers
            await self.mdns.stop()
            self.mdns = None
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.arbiter is not None:
            await self.arbiter.stop()
        if self.slots is not None:
            await self.slots.stop()
        await self.comfy.stop()
        await self.gpu.stop()
        if self.session is not None:
            await self.session.close()


def create_app(config: Config) -> web.Application:
    bridge = Bridge(config)
    app = make_app(config.server.token, config.server.max_body_bytes)
    app[BRIDGE_KEY] = bridge

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await bridge.start()
        yield
        await bridge.stop()

    control.setup(app)
    openai.setup(app)
    cache_routes.setup(app, bridge.cache)
    events.setup(app, bridge.hub, config.server.sse_ping_interval)
    openapi.setup(app)
    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly: MQTT says offline, systemd slot units keep
    running, the bridge's own process slots end with it.

    ``handler_cancellation``: a client that hangs up cancels its handler, so its render is taken back
    from ComfyUI instead of running on for nobody.
    """
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    _LOGGER.info("hal0-bridge listening on http://%s:%s", config.server.host, config.server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
