"""Wiring: builds every part from the config, starts them in order, stops them in reverse.

The only module that knows all the parts. ``create_app`` gives the aiohttp application (used by the
CLI and by tests); :class:`Bridge` owns the long-lived objects and their lifecycles.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from . import preflight
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
from .http import comfyui_proxy, control, events, llm, openai, openapi, page
from .http import metrics as metrics_routes
from .http.mdns import MdnsAnnouncer, announce_enabled
from .http.server import BRIDGE_KEY, make_app
from .identity import Identity, resolve
from .images.cache import ImageCache
from .images.service import ImageService
from .llm.demand import Demand
from .llm.models import ModelDirectory
from .llm.proxy import Upstream
from .llm.service import LlmService
from .metrics import Metrics
from .mqtt.setting import DiscoverySetting
from .signing import UrlSigner, load_or_create_key
from .status import StatusHub

if TYPE_CHECKING:
    from .mqtt.bridge import MqttBridge  # imported at run time only when MQTT is on (paho)

_LOGGER = logging.getLogger(__name__)


class Bridge:
    def __init__(self, config: Config) -> None:
        checked = preflight.check(config)  # the same checks --print-config runs
        self.config = config
        self.hub = StatusHub()
        self.metrics = Metrics(self.hub, mqtt_connected=self._mqtt_connected)  # listens before any source runs
        self.catalogue = checked.catalogue
        self.renderer = checked.renderer
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
        self.mqtt: MqttBridge | None = None  # created in start() when [mqtt] host is set
        self.images: ImageService | None = None
        self.gpu = GpuTelemetry(telemetry, self.hub, telemetry.sysfs_root)
        self.commands: Commands | None = None
        self.signer: UrlSigner | None = None  # image URLs are signed while a token guards the API
        self.llm: LlmService | None = None
        self.identity: Identity | None = None
        self.mdns: MdnsAnnouncer | None = None
        self.discovery = DiscoverySetting(config.mqtt.discovery, config.server.state_dir)
        self._gate: GpuGate = DirectGate()

    def _mqtt_connected(self) -> bool | None:
        """For /metrics: None when MQTT is off, else whether the broker connection is up."""
        if not self.config.mqtt.enabled:
            return None
        return self.mqtt is not None and bool(self.mqtt.connected)

    @property
    def gate(self) -> GpuGate:
        """Who decides the GPU mode for image work (the arbiter, or nothing to arbitrate)."""
        return self._gate

    async def start(self) -> None:
        # first, before anything writes to state_dir: a first start is told from an upgrade by it
        identity = self.identity = await asyncio.to_thread(resolve, self.config.node_id, self.config.server)
        self.config = self.config.with_node_id(identity.node_id)
        await self.cache.open()
        if self.config.server.token:
            key = await asyncio.to_thread(load_or_create_key, self.config.server.state_dir)
            self.signer = UrlSigner(key, self.config.server.signed_url_ttl)
        llm_slots = []
        demand = Demand([], self.config.llm.queue_max)
        if self.config.img_slot is not None:
            self.session = aiohttp.ClientSession()
            self.slots = SlotManager.from_config(self.config, self.hub, self.session)
            llm_slots = self.slots.llm
            demand = Demand([s.name for s in llm_slots], self.config.llm.queue_max)
            self.arbiter = Arbiter(self.config, self.hub, ComfyEngineControl(self.comfy), self.slots, llm_work=demand)
            self.comfy.set_img_slot_state(self.slots.img_state)
            self._gate = self.arbiter
        else:
            # Nothing to arbitrate: ComfyUI is the only GPU user (docs/decisions.md).
            self.hub.update(mode="generation")
        self.images = ImageService(
            self.config, self.hub, self.renderer, self.comfy, self.cache, self._gate, signer=self.signer
        )
        self.commands = Commands(
            self.config, self.hub, self.catalogue, self.images, self.comfy, self.arbiter,
            identity=self.identity, discovery=self.discovery,
        )  # fmt: skip
        await self.comfy.start()
        await self.gpu.start()
        if self.slots is not None and self.arbiter is not None:
            await self.slots.start()
            await self.arbiter.start()
        upstream = Upstream(self.config.llm.connect_timeout)
        directory = ModelDirectory(llm_slots, upstream, self.config.server.state_dir)
        self.llm = LlmService(self.config.llm, self.hub, llm_slots, self.arbiter, demand, directory, upstream)
        await self.llm.start()
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
        if self.llm is not None:
            await self.llm.stop()
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
    app = make_app(config.server)
    app[BRIDGE_KEY] = bridge

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await bridge.start()
        yield
        await bridge.stop()

    control.setup(app)
    openai.setup(app)
    llm.setup(app)
    cache_routes.setup(app, bridge.cache)
    events.setup(app, bridge.hub, config.server.sse_ping_interval)
    metrics_routes.setup(app, bridge.metrics)
    page.setup(app)
    comfyui_proxy.setup(app)
    openapi.setup(app)
    app.cleanup_ctx.append(lifecycle)
    return app


async def listen(host: str, port: int) -> list[socket.socket]:
    """Bind the API's listening sockets (every address ``host`` resolves to, like asyncio does).

    Done before the bridge starts its slots and MQTT, so a port in use is one clear
    ``ConfigError`` naming ``server.port`` instead of a traceback after half a start-up.
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as err:
        raise ConfigError(f"server.host: cannot resolve {host!r}: {err.strerror or err}") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
    except OSError as err:
        for sock in sockets:
            sock.close()
        raise ConfigError(f"server.port: cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sockets


async def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM, then stop cleanly: MQTT says offline, systemd slot units keep
    running, the bridge's own process slots end with it.

    ``handler_cancellation``: a client that hangs up cancels its handler, so its render is taken back
    from ComfyUI instead of running on for nobody.
    """
    app = create_app(config)
    sockets = await listen(config.server.host, config.server.port)  # before anything starts
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0, handler_cancellation=True)
    await runner.setup()
    for sock in sockets:
        await web.SockSite(runner, sock).start()
    _LOGGER.info("hal0-bridge listening on http://%s:%s", config.server.host, config.server.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
