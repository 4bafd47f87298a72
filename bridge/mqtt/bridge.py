"""The MQTT side of the bridge: retained state, commands, request/response, events, HA discovery.

How it meets asyncio: paho's own network thread (``loop_start``) does the socket work, and every
paho callback only hands its arguments to the event loop with ``loop.call_soon_threadsafe``; all
logic runs on the loop. Chosen over driving paho's socket from the loop because paho's thread
already owns the parts that block or are easy to get wrong — DNS, the TCP connect and TLS
handshake, keepalive pings, and the reconnect back-off with ``retry_first_connection`` — while
``publish``/``subscribe`` are thread-safe and only enqueue, so the loop never waits on the network.

Topics live in :mod:`mqtt_topics`; every command goes through the one :class:`Commands`
dispatcher that REST uses, so the rules (busy queue without force is refused, ...) are shared.
``hal0/comfyui/mode/set`` and ``.../pin/set`` answer on ``hal0/response/switchover`` and
``hal0/response/pin`` like the matching requests, so automations see every outcome.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from .. import errors
from ..config import Config
from ..errors import ApiError
from ..status import StatusHub, Subscription
from .discovery import discovery_payload
from .payloads import Reply, parse_mode_set, parse_pin_set, parse_request, payload_text, state_payloads, to_json
from .setting import DiscoverySetting
from .topics import ACTIONS, Topics

if TYPE_CHECKING:
    from ..commands import Commands

_LOGGER = logging.getLogger(__name__)

QOS = 1  # availability, state, events and responses: at least once

ONLINE = "online"
OFFLINE = "offline"
class MqttBridge:
    """Publishes the status snapshot and events, and serves commands, over one MQTT connection."""

    def __init__(
        self, config: Config, hub: StatusHub, commands: Commands, *, discovery: DiscoverySetting | None = None
    ) -> None:
        self._config = config
        self._discovery = discovery  # None: [mqtt] discovery as configured, never changed at run time
        self._mqtt = config.mqtt
        self._hub = hub
        self._commands = commands
        self.topics = Topics.from_config(config.mqtt)
        self._v5 = self._mqtt.protocol == "5"
        # mqtt.commands = "read_only": MQTT publishes state and events but takes no commands at all
        self._read_only = self._mqtt.commands == "read_only"
        self._subscriptions = self.topics.command_topics(read_only=self._read_only)
        self._max_payload = config.server.max_body_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connected_event = asyncio.Event()  # connected and subscriptions acknowledged
        self._subscribe_mid: int | None = None
        self._stopping = False
        self._failures = 0  # connection attempts failed in a row (log the first one loudly)
        self._published: dict[str, bytes] = {}  # retained state as last sent on this connection
        self._pending_status: dict[str, Any] | None = None
        self._status_wakeup = asyncio.Event()
        self._last_state_write = 0.0
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workers: list[asyncio.Task[Any]] = []
        self._subscription: Subscription | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        return self._connected

    async def wait_connected(self) -> None:
        """Return once connected and subscribed, i.e. commands sent from now on are heard.

        Callers bound it with their own timeout.
        """
        await self._connected_event.wait()

    async def start(self) -> None:
        """Connect in the background; a broker that is down is retried forever, never fatal."""
        self._loop = asyncio.get_running_loop()
        try:
            # tls_set reads certificate files: keep that off the loop.
            self._client = await asyncio.to_thread(self._build_client)
        except (OSError, ValueError, ssl.SSLError) as err:
            _LOGGER.error("MQTT stays off: cannot set up the client (%s)", err)
            return
        self._subscription = self._hub.subscribe(initial=False, reader="mqtt")
        if self._discovery is not None:
            self._discovery.listeners.append(self._on_discovery_changed)
        self._workers = [
            asyncio.create_task(self._read_feed(), name="mqtt-feed"),
            asyncio.create_task(self._write_state_loop(), name="mqtt-state"),
        ]
        try:
            if self._v5:
                self._client.connect_async(
                    self._mqtt.host, self._mqtt.port, self._mqtt.keepalive, clean_start=True
                )
            else:
                self._client.connect_async(self._mqtt.host, self._mqtt.port, self._mqtt.keepalive)
        except (OSError, ValueError) as err:
            _LOGGER.error("MQTT stays off: bad broker address %s:%s (%s)", self._mqtt.host, self._mqtt.port, err)
            await self._cancel_workers()
            return
        self._client.loop_start()
        _LOGGER.info("MQTT: connecting to %s:%s as %s", self._mqtt.host, self._mqtt.port, self._client_id)

    async def stop(self) -> None:
        """Publish ``offline`` (retained), wait for the broker's ack, then disconnect cleanly."""
        self._stopping = True
        if self._discovery is not None and self._on_discovery_changed in self._discovery.listeners:
            self._discovery.listeners.remove(self._on_discovery_changed)
        await self._cancel_workers()
        client = self._client
        if client is None:
            return
        if self._connected:
            info = self._publish(self.topics.availability, OFFLINE, retain=True)
            if info is not None and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                await self._wait_ack(info.mid)
        client.disconnect()
        try:
            # joins paho's thread, which may be inside a connect attempt (bounded by connect_timeout)
            await asyncio.wait_for(
                asyncio.to_thread(client.loop_stop), self._mqtt.connect_timeout + self._mqtt.stop_timeout
            )
        except TimeoutError:  # paho's thread is a daemon thread: it cannot hold the process up
            _LOGGER.warning("MQTT: network thread did not stop in time")
        self._connected = False
        self._connected_event.clear()
        self._client = None

    async def _cancel_workers(self) -> None:
        tasks = [*self._workers, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers = []
        self._tasks.clear()
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    async def _wait_ack(self, mid: int) -> None:
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._acks[mid] = future
        try:
            await asyncio.wait_for(future, self._mqtt.stop_timeout)
        except TimeoutError:
            _LOGGER.warning("MQTT: broker did not acknowledge message %s in time", mid)
        finally:
            self._acks.pop(mid, None)

    @property
    def _client_id(self) -> str:
        return self._mqtt.client_id or f"hal0-bridge-{self._mqtt.node_id}"

    def _build_client(self) -> mqtt.Client:
        cfg = self._mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else True,
        )
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            # tls_insecure: accept any certificate (self-signed brokers without a CA file), not just any name.
            client.tls_set(
                ca_certs=cfg.ca_file or None,
                certfile=cfg.certfile or None,
                keyfile=cfg.keyfile or None,
                cert_reqs=ssl.CERT_NONE if cfg.tls_insecure else ssl.CERT_REQUIRED,
            )
            if cfg.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(self.topics.availability, OFFLINE, qos=QOS, retain=True)
        client.reconnect_delay_set(
            self._mqtt.reconnect_min_delay, self._mqtt.reconnect_max_delay
        )
        client.max_queued_messages_set(self._mqtt.max_queued_messages)
        client.connect_timeout = self._mqtt.connect_timeout
        client.on_connect = self._paho_on_connect
        client.on_connect_fail = self._paho_on_connect_fail
        client.on_disconnect = self._paho_on_disconnect
        client.on_message = self._paho_on_message
        client.on_publish = self._paho_on_publish
        client.on_subscribe = self._paho_on_subscribe
        return client

    # ------------------------------------------------- paho thread -> event loop

    def _hand_off(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` on the event loop; called from paho's network thread only."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # loop closed between the check and the call (shutdown)
            pass

    def _paho_on_connect(self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._hand_off(self._on_connect, reason)

    def _paho_on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._hand_off(self._on_connect_fail)

    def _paho_on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._hand_off(self._on_disconnect, reason)

    def _paho_on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._hand_off(self._on_message, message)

    def _paho_on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._hand_off(self._on_publish, mid)

    def _paho_on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._hand_off(self._on_subscribe, mid, list(reasons))

    # ------------------------------------------------------- connection events

    def _on_connect(self, reason: ReasonCode) -> None:
        if self._stopping or self._client is None:
            return  # a CONNACK handed over while stop() ran
        if reason.is_failure:
            self._on_connect_fail(str(reason))
            return
        self._connected = True
        self._failures = 0
        _LOGGER.info("MQTT: connected to %s:%s", self._mqtt.host, self._mqtt.port)
        _rc, self._subscribe_mid = self._client.subscribe([(topic, QOS) for topic in self._subscriptions])
        # Everything is published again once the SUBACK is in (see _on_subscribe).

    def _on_connect_fail(self, reason: str = "broker unreachable") -> None:
        self._failures += 1
        log = _LOGGER.warning if self._failures == 1 else _LOGGER.debug
        log("MQTT: cannot connect to %s:%s (%s); retrying", self._mqtt.host, self._mqtt.port, reason)

    def _on_disconnect(self, reason: ReasonCode) -> None:
        was_connected = self._connected
        self._connected = False
        self._connected_event.clear()
        self._published.clear()
        if was_connected and not self._stopping:
            _LOGGER.warning("MQTT: disconnected (%s); reconnecting", reason)

    def _on_subscribe(self, mid: int, reasons: list[ReasonCode]) -> None:
        if mid != self._subscribe_mid or not self._connected:
            return
        refused = [t for t, r in zip(self._subscriptions, reasons, strict=False) if r.is_failure]
        if refused:  # e.g. a broker ACL: the bridge still publishes, but cannot hear these
            _LOGGER.warning("MQTT: broker refused subscriptions to %s", ", ".join(refused))
        # A broker restart loses retained messages, so every connect publishes everything again.
        # Only now: paho re-sends messages the old connection left unacknowledged right after the
        # CONNACK, in its own thread; the SUBACK comes later, so fresh state always follows stale
        # state and wins. "online" also means commands are heard from now on.
        self._publish_everything()
        self._connected_event.set()

    def _on_publish(self, mid: int) -> None:
        future = self._acks.get(mid)
        if future is not None and not future.done():
            future.set_result(None)

    # ---------------------------------------------------------------- outgoing

    def _publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> mqtt.MQTTMessageInfo | None:
        """Enqueue one message (paho's thread sends it); never raises."""
        if self._client is None:
            return None
        try:
            info = self._client.publish(topic, payload, qos=QOS, retain=retain, properties=properties)
        except (ValueError, TypeError) as err:
            _LOGGER.warning("MQTT: cannot publish to %r: %s", topic, err)
            return None
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            _LOGGER.warning("MQTT: publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        return info

    def _publish_everything(self) -> None:
        """Availability, info, discovery and every state topic, regardless of what was sent before."""
        self._publish(self.topics.availability, ONLINE, retain=True)
        info = self._info()
        if info is not None:
            self._publish(self.topics.info, to_json(info), retain=True)
        self._publish_discovery(info)
        self._published.clear()
        self._pending_status = None
        self._write_state(self._hub.status.to_dict())

    @property
    def discovery_enabled(self) -> bool:
        return self._discovery.enabled if self._discovery is not None else self._mqtt.discovery

    def _publish_discovery(self, info: dict[str, Any] | None) -> None:
        if self.discovery_enabled:
            payload = discovery_payload(self.topics, info or {}, read_only=self._read_only)
            self._publish(self.topics.discovery, to_json(payload), retain=True)
        else:
            # An empty retained config removes entities an earlier run with discovery on created.
            self._publish(self.topics.discovery, b"", retain=True)

    def _on_discovery_changed(self, enabled: bool) -> None:
        """The API changed discovery: add or remove the entities now, and say so in bridge/info."""
        _LOGGER.info("MQTT: Home Assistant discovery turned %s through the API", "on" if enabled else "off")
        if not self._connected:
            return  # the next connect publishes everything as now set
        info = self._info()
        if info is not None:
            self._publish(self.topics.info, to_json(info), retain=True)
        self._publish_discovery(info)

    def _info(self) -> dict[str, Any] | None:
        try:
            return self._commands.info()
        except Exception:  # info is best effort; state and commands must still work
            _LOGGER.exception("MQTT: cannot build bridge info")
            return None

    def _write_state(self, status: dict[str, Any]) -> None:
        """Publish the state topics whose payload changed since the last write on this connection."""
        self._last_state_write = self._loop.time() if self._loop else 0.0
        if not self._connected:
            return  # the next connect publishes the then-current snapshot
        for topic, payload in state_payloads(self.topics, status).items():
            if self._published.get(topic) == payload:
                continue
            info = self._publish(topic, payload, retain=True)
            if info is not None and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._published[topic] = payload

    def _flush_status(self) -> None:
        if self._pending_status is not None:
            status, self._pending_status = self._pending_status, None
            self._write_state(status)

    async def _read_feed(self) -> None:
        """Discrete state changes and events go out at once, in order; progress/memory churn is coalesced.

        The hub's feed already merges changes a lagging reader has not seen; on top of that the
        full snapshot and memory gauge (which change with every render step and probe) are written
        at most every ``state_min_interval``, always ending with the newest state.
        """
        assert self._subscription is not None
        async for message in self._subscription:
            if message.kind == "status":
                self._pending_status = message.data
                if self._discrete_change(message.data):
                    self._flush_status()  # mode/engine/pin/queue/switch: automations wait for these
                else:
                    self._status_wakeup.set()  # progress/memory only: rate-limited
            else:
                self._flush_status()  # an event never overtakes the state it talks about
                if self._connected:
                    self._publish(self.topics.event, to_json(message.data))

    def _discrete_change(self, status: dict[str, Any]) -> bool:
        """True when a state topic other than the full snapshot and the memory gauge would change."""
        if not self._connected:
            return False
        payloads = state_payloads(self.topics, status)
        return any(
            self._published.get(topic) != payloads[topic]
            for topic in (self.topics.mode, self.topics.engine, self.topics.pinned, self.topics.queue, self.topics.switchover)
        )

    async def _write_state_loop(self) -> None:
        """Publish parked status at once, then at most every ``state_min_interval`` during bursts."""
        assert self._loop is not None
        interval = self._mqtt.state_min_interval
        while True:
            await self._status_wakeup.wait()
            self._status_wakeup.clear()
            delay = self._last_state_write + interval - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._flush_status()

    # ---------------------------------------------------------------- incoming

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic
        if topic == self.topics.ha_status:
            if message.payload.strip().lower() == ONLINE.encode() and self._connected:
                _LOGGER.info("MQTT: Home Assistant is online; publishing everything again")
                self._publish_everything()
            return
        if self._read_only:  # never subscribed; a broker may still deliver (overlapping filters)
            _LOGGER.debug("MQTT: read_only, ignoring message on %s", topic)
            return
        if topic == self.topics.mode_set:
            action, parse = "switchover", parse_mode_set
        elif topic == self.topics.pin_set:
            action, parse = "pin", parse_pin_set
        elif (requested := self.topics.action_of(topic)) is not None:
            action, parse = requested, parse_request
        else:
            _LOGGER.debug("MQTT: ignoring message on %s", topic)
            return
        if message.retain:
            # A retained command would fire again on every reconnect: refuse it, change nothing.
            _LOGGER.warning("MQTT: ignoring retained message on command topic %s (publish commands without retain)", topic)
            return
        self._spawn(self._serve(message, action, parse))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reply_for(self, message: mqtt.MQTTMessage, action: str) -> Reply:
        """``hal0/response/<action>``, or the MQTT 5 response topic (with correlation data) when given."""
        reply = Reply(action=action, topic=self.topics.response(action))
        props = getattr(message, "properties", None)
        if props is not None:
            response_topic = getattr(props, "ResponseTopic", None)
            if isinstance(response_topic, str) and self.topics.may_answer_on(response_topic):
                reply.topic = response_topic
            correlation = getattr(props, "CorrelationData", None)
            if isinstance(correlation, (bytes, bytearray)):
                reply.correlation = bytes(correlation)
        return reply

    async def _serve(
        self, message: mqtt.MQTTMessage, action: str, parse: Callable[[str, Reply], Any]
    ) -> None:
        """Parse, run through Commands, answer; any failure becomes an error reply, never a crash."""
        reply = self._reply_for(message, action)
        try:
            body = parse(payload_text(message.payload, self._max_payload), reply)
            data = await self._execute(action, body)
        except ApiError as err:
            _LOGGER.info("MQTT %s on %s refused: %s %s", action, message.topic, err.code, err.message)
            self._respond(reply, error=err.envelope()["error"])
        except Exception as err:  # a bug behind one command must not take the bridge down
            _LOGGER.exception("MQTT %s on %s failed", action, message.topic)
            internal = ApiError(errors.INTERNAL, f"internal error ({type(err).__name__}); see the bridge log")
            self._respond(reply, error=internal.envelope()["error"])
        else:
            self._respond(reply, data=data)

    async def _execute(self, action: str, body: Any) -> Any:
        commands = self._commands
        if action == "status":
            return await commands.status()
        if action == "info":
            return commands.info()
        if action == "switchover":
            _code, data = await commands.switchover(body, trigger="mqtt")
            return data
        if action == "pin":
            return await commands.pin(body)
        if action == "generate":
            return await commands.generate(body)
        if action == "cancel":
            return await commands.cancel()
        raise ApiError(
            errors.NOT_FOUND, f"unknown action {action!r}", param="action", details={"actions": list(ACTIONS)}
        )

    def _respond(self, reply: Reply, *, data: Any = None, error: dict[str, Any] | None = None) -> None:
        payload = {
            "status": "error" if error else "ok",
            "data": data,
            "error": error,
            "transaction": reply.transaction,
        }
        properties = None
        if self._v5 and reply.correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]  # paho's own
            properties.CorrelationData = reply.correlation
        if not self._connected:
            _LOGGER.info("MQTT: broker gone, %s answer dropped: %s", reply.action, payload["status"])
            return
        self._publish(reply.topic, to_json(payload), properties=properties)
