"""Prometheus metrics, fed only by the status hub: gauges read the snapshot at scrape time, counters
and histograms count the hub's events. No other module counts anything for metrics.

Labels are bounded by construction: models come from the curated catalogue, targets and triggers
from the arbiter's fixed sets, error codes from ``errors.py``, slot names from the config, event
types from the code that emits them. No prompt text, no ids, no URLs.
docs/metrics.md lists every name; ``tests/daemon/test_metrics.py`` parses the output back with
``prometheus_client``'s own parser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .status import Engine, Message, Mode, Status, StatusHub

_LOGGER = logging.getLogger(__name__)
# no *_created series: a gauge per counter with its creation time doubles the output for nothing
# (the library's switch is process-wide; the bridge is the only registry user in its process)
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client
CONTENT_TYPE = CONTENT_TYPE_LATEST
MODES: tuple[str, ...] = get_args(Mode)
ENGINES: tuple[str, ...] = get_args(Engine)
# a render is 0.1 s (turbo, small) to minutes (big models, many steps)
RENDER_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# a switch is the slots' stop/start plus ComfyUI's readiness: ~0.1 s with tiny slots, a minute with real models
SWITCH_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)


class _SnapshotCollector(Collector):
    """The gauges: read from the hub's snapshot (and reader counts) at each scrape, so never stale."""

    def __init__(self, hub: StatusHub, mqtt_connected: Callable[[], bool | None]) -> None:
        self._hub = hub
        self._mqtt_connected = mqtt_connected

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the registry would otherwise call collect() at registration, before the
        bridge has all its parts (MQTT is created in start())."""
        return iter(())

    def collect(self) -> Iterator[Metric]:
        status = self._hub.status
        yield _labelled("hal0_mode", "GPU owner: 1 for the current mode", "mode",
                        {m: m == status.mode for m in MODES})  # fmt: skip
        yield _gauge("hal0_pinned", "Generation mode is pinned against idle-restore", status.pinned)
        yield _gauge("hal0_switching", "A switchover is in flight", status.switchover.active)
        yield _labelled("hal0_engine_state", "ComfyUI engine state: 1 for the current one", "state",
                        {e: e == status.engine for e in ENGINES})  # fmt: skip
        yield _gauge("hal0_comfyui_reachable", "ComfyUI's HTTP API answers", status.reachable)
        yield from _memory(status)
        yield _gauge("hal0_queue_running", "Renders running in ComfyUI", status.queue.running)
        yield _gauge("hal0_queue_pending", "Renders waiting in ComfyUI's queue", status.queue.pending)
        if status.idle_restore_at is not None:
            yield _gauge(
                "hal0_idle_restore_timestamp_seconds", "When idle-restore hands the GPU back", status.idle_restore_at
            )
        slots = GaugeMetricFamily("hal0_slot_ready", "1 when the slot is ready", labels=["slot", "group"])
        for slot in status.slots:
            slots.add_metric([slot.name, slot.group], float(slot.state == "ready"))
        yield slots
        yield _gauge("hal0_sse_clients", "Open GET /api/events streams", self._hub.reader_count("sse"))
        connected = self._mqtt_connected()
        if connected is not None:
            yield _gauge("hal0_mqtt_connected", "The bridge's MQTT connection is up", connected)
        info = GaugeMetricFamily("hal0_build_info", "The bridge's version", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info


def _gauge(name: str, doc: str, value: float | bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _labelled(name: str, doc: str, label: str, values: dict[str, bool]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for key, on in values.items():
        family.add_metric([key], float(on))
    return family


def _memory(status: Status) -> Iterator[Metric]:
    """Byte gauges; a reading the bridge does not have is left out, never reported as 0."""
    mem = status.memory
    for name, doc, value in (
        ("hal0_gtt_used_bytes", "GPU memory (GTT) in use", mem.gtt_used),
        ("hal0_gtt_total_bytes", "GPU memory (GTT) in total", mem.gtt_total),
        ("hal0_ram_used_bytes", "System RAM in use (ComfyUI's reading)", mem.ram_used),
        ("hal0_ram_total_bytes", "System RAM in total (ComfyUI's reading)", mem.ram_total),
    ):
        if value is not None:
            yield _gauge(name, doc, value)


class Metrics:
    """The bridge's registry. Built once per bridge; listens to the hub from construction on."""

    def __init__(self, hub: StatusHub, *, mqtt_connected: Callable[[], bool | None] = lambda: None) -> None:
        self._hub = hub
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_SnapshotCollector(hub, mqtt_connected))
        reg = self.registry
        self.renders = Counter("hal0_renders", "Image requests rendered, by model and outcome (ok, failed)",
                               ["model", "outcome"], registry=reg)  # fmt: skip
        self.render_errors = Counter("hal0_render_errors", "Failed image requests by error code", ["code"],
                                     registry=reg)  # fmt: skip
        self.images = Counter("hal0_images_generated", "Images produced (a request may make n)", ["model"],
                              registry=reg)  # fmt: skip
        self.render_seconds = Histogram("hal0_render_seconds", "ComfyUI render time of successful requests",
                                        ["model"], buckets=RENDER_BUCKETS, registry=reg)  # fmt: skip
        self.switch_seconds = Histogram("hal0_switch_seconds", "Duration of successful switchovers",
                                        ["target", "trigger"], buckets=SWITCH_BUCKETS, registry=reg)  # fmt: skip
        self.switch_failures = Counter("hal0_switch_failures", "Switchovers that failed (and were rolled back)",
                                       ["target", "trigger"], registry=reg)  # fmt: skip
        self.idle_restores = Counter("hal0_idle_restores", "Switches back to inference by idle-restore",
                                     registry=reg)  # fmt: skip
        self.events = Counter("hal0_events", "Events the bridge emitted, by type", ["type"], registry=reg)
        hub.listen(self._observe)

    def render(self) -> bytes:
        """The text exposition format (what ``GET /metrics`` answers)."""
        return generate_latest(self.registry)

    def _observe(self, message: Message) -> None:
        if message.kind != "event":
            return  # gauges read the snapshot at scrape time
        try:
            self._count(message.data)
        except Exception:  # a bug here must never break the hub's publishing
            _LOGGER.exception("metrics: cannot count event %r", message.data.get("type"))

    def _count(self, event: dict[str, Any]) -> None:
        kind = str(event["type"])
        self.events.labels(kind).inc()
        if kind == "image_generated":
            model = str(event["model"])
            self.renders.labels(model, "ok").inc()
            self.images.labels(model).inc(int(event.get("n", 1)))
            render_s = event.get("timings", {}).get("render_s")
            if isinstance(render_s, (int, float)):
                self.render_seconds.labels(model).observe(render_s)
        elif kind == "render_failed":
            self.renders.labels(str(event["model"]), "failed").inc()
            self.render_errors.labels(str(event["code"])).inc()
        elif kind in ("switch_finished", "switch_failed"):
            target, trigger = str(event["target"]), str(event["trigger"])
            if kind == "switch_failed":
                self.switch_failures.labels(target, trigger).inc()
                return
            self.switch_seconds.labels(target, trigger).observe(self._switch_duration(event))
            if trigger == "idle" and target == "inference":
                self.idle_restores.inc()

    def _switch_duration(self, event: dict[str, Any]) -> float:
        """Start to end of the switch, from the snapshot the arbiter updated just before this event
        (the hub calls listeners synchronously); the sum of its phases if that is not this switch."""
        sw = self._hub.status.switchover
        if sw.target == event["target"] and sw.started_at is not None and sw.finished_at is not None:
            return max(0.0, sw.finished_at - sw.started_at)
        return float(sum(event.get("phases", {}).values()))
