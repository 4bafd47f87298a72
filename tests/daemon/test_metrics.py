"""``GET /metrics``: read back with prometheus_client's own parser, against the real bridge, the
ComfyUI stand-in and (for switches) real slot processes."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.http.server import BRIDGE_KEY
from hal0_bridge.metrics import Metrics
from hal0_bridge.status import Memory
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.daemon.gpu.test_arbiter import RigFactory, rig_factory  # noqa: F401
from tests.support import fake_llama
from tests.support.comfyui_standin import ComfyStandIn

GEN = "/v1/images/generations"
WAIT_S = 10.0  # bound against hanging, never a speed assertion


def parse(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


async def scrape(api: TestClient) -> list[Sample]:
    resp = await api.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return parse(await resp.text())


async def scrape_until(api: TestClient, check: Any, what: str) -> list[Sample]:
    async with asyncio.timeout(WAIT_S):
        while True:
            samples = await scrape(api)
            if check(samples):
                return samples
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover


# ------------------------------------------------------------------------------- gauges


async def test_gauges_show_the_snapshot(api: TestClient, standin: ComfyStandIn) -> None:
    samples = await scrape_until(api, lambda s: value(s, "hal0_comfyui_reachable") == 1, "ComfyUI seen")
    samples = await scrape_until(api, lambda s: value(s, "hal0_ram_total_bytes") is not None, "memory read")

    settings, memory = standin.settings, api.app[BRIDGE_KEY].hub.status.memory
    assert memory.ram_total is not None and memory.ram_used is not None
    assert value(samples, "hal0_ram_total_bytes") == memory.ram_total
    assert value(samples, "hal0_ram_used_bytes") == memory.ram_used
    # the snapshot holds ComfyUI's numbers in whole [telemetry] memory_step_gib steps (0.01 GiB)
    step = 0.01 * 1024**3
    assert abs(memory.ram_total - settings.ram_total) <= step
    assert abs(memory.ram_used - (settings.ram_total - settings.ram_free)) <= step
    assert value(samples, "hal0_gtt_total_bytes") is not None
    # no img slot: ComfyUI is the only GPU user, so the mode is generation (docs/decisions.md)
    assert value(samples, "hal0_mode", mode="generation") == 1
    assert value(samples, "hal0_mode", mode="inference") == 0
    assert value(samples, "hal0_engine_state", state="running") == 1
    assert sum(value(samples, "hal0_engine_state", state=s) or 0 for s in ("generating", "starting", "stopped")) == 0
    assert value(samples, "hal0_pinned") == 0
    assert value(samples, "hal0_queue_running") == 0 and value(samples, "hal0_queue_pending") == 0
    assert value(samples, "hal0_build_info") == 1
    assert value(samples, "hal0_mqtt_connected") is None  # MQTT is off: no gauge that pretends otherwise


async def test_unknown_memory_is_left_out_not_reported_as_zero(aiohttp_client: Any, bridge_config: Any) -> None:
    config = bridge_config(comfyui={"url": f"http://127.0.0.1:{fake_llama.free_port()}"})  # nobody there
    api = await aiohttp_client(create_app(config))

    samples = await scrape(api)

    assert value(samples, "hal0_comfyui_reachable") == 0
    assert value(samples, "hal0_engine_state", state="stopped") == 1
    for name in ("hal0_gtt_used_bytes", "hal0_gtt_total_bytes", "hal0_ram_used_bytes", "hal0_ram_total_bytes"):
        assert value(samples, name) is None, name


async def test_mqtt_connection_is_reported_when_mqtt_is_on(aiohttp_client: Any, bridge_config: Any) -> None:
    config = bridge_config(mqtt={"host": "127.0.0.1", "port": fake_llama.free_port()})  # no broker there
    api = await aiohttp_client(create_app(config))

    assert value(await scrape(api), "hal0_mqtt_connected") == 0


async def test_metrics_need_no_token_like_status(aiohttp_client: Any, bridge_config: Any) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": "metrics-token"})))

    assert (await api.get("/metrics")).status == 200
    assert (await api.get("/api/comfyui/status")).status == 200
    assert (await api.post(GEN, json={"prompt": "x"})).status == 401  # the rule that does apply


async def test_sse_clients_count_open_event_streams(api: TestClient) -> None:
    assert value(await scrape(api), "hal0_sse_clients") == 0
    async with api.get("/api/events") as stream:
        await stream.content.readline()  # the first snapshot: the stream is open
        assert value(await scrape(api), "hal0_sse_clients") == 1
    await scrape_until(api, lambda s: value(s, "hal0_sse_clients") == 0, "stream closed")


# ------------------------------------------------------------------------------- renders


async def test_a_render_counts_by_model_and_outcome_with_its_time(api: TestClient) -> None:
    resp = await api.post(GEN, json={"prompt": "a secret prompt text", "size": "64x64", "n": 2})
    body = await resp.json()
    assert resp.status == 200, body

    samples = await scrape(api)

    assert value(samples, "hal0_renders_total", model="sdxl-turbo", outcome="ok") == 1
    assert value(samples, "hal0_images_generated_total", model="sdxl-turbo") == 2
    assert value(samples, "hal0_render_seconds_count", model="sdxl-turbo") == 1
    assert value(samples, "hal0_render_seconds_sum", model="sdxl-turbo") == body["_hal0"]["timings"]["render_s"]
    assert value(samples, "hal0_events_total", type="image_generated") == 1


async def test_a_failed_render_counts_as_failed_with_its_code(api: TestClient, standin: ComfyStandIn) -> None:
    standin.settings.fail_next_prompts = 1
    resp = await api.post(GEN, json={"prompt": "x", "size": "64x64", "model": "sd15"})
    assert resp.status == 502

    samples = await scrape(api)

    assert value(samples, "hal0_renders_total", model="sd-1.5-pruned-emaonly", outcome="failed") == 1
    assert value(samples, "hal0_render_errors_total", code="image.upstream_failed") == 1
    assert value(samples, "hal0_renders_total", model="sd-1.5-pruned-emaonly", outcome="ok") is None


async def test_labels_carry_no_prompt_text_ids_or_urls(api: TestClient) -> None:
    resp = await api.post(GEN, json={"prompt": "zebra-unicorn-42", "size": "64x64"})
    body = await resp.json()

    text = await (await api.get("/metrics")).text()

    for secret in ("zebra-unicorn-42", body["_hal0"]["prompt_id"], body["_hal0"]["urls"][0], str(body["_hal0"]["seed"])):
        assert secret not in text, secret
    labels = {k for s in parse(text) for k in s.labels}
    assert labels <= {"mode", "state", "slot", "group", "version", "model", "outcome", "code", "target", "trigger",
                      "type", "le"}


# ------------------------------------------------------------------------------- switches (real slot processes)


def metric_text(metrics: Metrics) -> list[Sample]:
    return parse(metrics.render().decode())


async def test_a_switch_is_timed_by_target_and_trigger(rig_factory: RigFactory) -> None:  # noqa: F811
    rig = await rig_factory()
    metrics = Metrics(rig.hub)

    await rig.switch("generation")

    samples = metric_text(metrics)
    sw = rig.hub.status.switchover
    assert value(samples, "hal0_switch_seconds_count", target="generation", trigger="api") == 1
    assert value(samples, "hal0_switch_seconds_sum", target="generation", trigger="api") == sw.finished_at - sw.started_at
    assert value(samples, "hal0_switch_failures_total", target="generation", trigger="api") is None
    assert value(samples, "hal0_slot_ready", slot="comfy", group="img") == 1
    assert value(samples, "hal0_slot_ready", slot="llm1", group="llm") == 0
    assert value(samples, "hal0_mode", mode="generation") == 1


async def test_a_failed_switch_counts_as_a_failure(rig_factory: RigFactory) -> None:  # noqa: F811
    rig = await rig_factory(img_command=fake_llama.command(fake_llama.free_port(), "--exit-at-once", "3"))
    metrics = Metrics(rig.hub)

    end = await rig.switch("generation")

    assert end["type"] == "switch_failed"
    samples = metric_text(metrics)
    assert value(samples, "hal0_switch_failures_total", target="generation", trigger="api") == 1
    assert value(samples, "hal0_switch_seconds_count", target="generation", trigger="api") is None
    assert value(samples, "hal0_mode", mode="inference") == 1


async def test_idle_restore_is_counted(rig_factory: RigFactory) -> None:  # noqa: F811
    rig = await rig_factory(image={"idle_restore_minutes": 0.005})  # 0.3 s
    metrics = Metrics(rig.hub)
    await rig.switch("generation")
    assert value(metric_text(metrics), "hal0_idle_restore_timestamp_seconds") == rig.hub.status.idle_restore_at

    end = await rig.next_switch_end(rig.watch())

    assert (end["target"], end["trigger"]) == ("inference", "idle")
    samples = metric_text(metrics)
    assert value(samples, "hal0_idle_restores_total") == 1
    assert value(samples, "hal0_switch_seconds_count", target="inference", trigger="idle") == 1
    assert value(samples, "hal0_idle_restore_timestamp_seconds") is None


async def test_docs_list_exactly_the_exported_metrics(rig_factory: RigFactory) -> None:  # noqa: F811
    """docs/metrics.md's table names every family the bridge exports (once it has seen each kind)."""
    rig = await rig_factory()
    metrics = Metrics(rig.hub, mqtt_connected=lambda: False)
    await rig.switch("generation")
    rig.hub.emit("image_generated", model="sdxl-turbo", n=1, timings={"render_s": 0.1})
    rig.hub.emit("render_failed", model="sdxl-turbo", code="image.upstream_failed", message="x")
    rig.hub.emit("switch_failed", target="inference", trigger="api", phases={}, error="x")
    rig.hub.update(memory=Memory(gtt_used=1, gtt_total=2, ram_used=3, ram_total=4), idle_restore_at=1e9)  # as probes do
    families = {f.name for f in text_string_to_metric_families(metrics.render().decode())}

    table = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text().split("## Names")[1]
    table = table.split("\n## ")[0]
    documented = set(re.findall(r"`(hal0_[a-z_]+)`", table.split("**Added when")[0]))
    exported = {f + "_total" if f + "_total" in documented else f for f in families}
    assert exported == documented
