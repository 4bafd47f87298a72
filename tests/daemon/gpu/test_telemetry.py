"""GPU telemetry from an amdgpu sysfs tree (a temporary directory laid out like the kernel's), into
the status snapshot and the MQTT topic; hosts without it publish null."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hal0_bridge.app import create_app
from hal0_bridge.config import build
from hal0_bridge.gpu.telemetry import read_gpu
from hal0_bridge.mqtt.payloads import state_payloads
from hal0_bridge.mqtt.topics import Topics
from hal0_bridge.status import Gpu

GIB = 1024**3


def make_card(root: Path, name: str, *, gtt_total: int, busy: int | None = 12, temp_milli: int | None = 48000,
              power_micro: int | None = 23_500_000, power_file: str = "power1_average") -> Path:  # fmt: skip
    device = root / name / "device"
    hwmon = device / "hwmon" / "hwmon3"
    hwmon.mkdir(parents=True)
    (device / "mem_info_gtt_total").write_text(f"{gtt_total}\n")
    (device / "mem_info_gtt_used").write_text(f"{GIB}\n")
    if busy is not None:
        (device / "gpu_busy_percent").write_text(f"{busy}\n")
    if temp_milli is not None:
        (hwmon / "temp1_input").write_text(f"{temp_milli}\n")
    if power_micro is not None:
        (hwmon / power_file).write_text(f"{power_micro}\n")
    return device


def test_a_reading_has_load_temperature_and_power_in_plain_units(tmp_path: Path) -> None:
    make_card(tmp_path, "card0", gtt_total=96 * GIB)

    assert read_gpu(tmp_path) == Gpu(card="card0", busy_percent=12.0, temperature_c=48.0, power_w=23.5)


def test_the_card_with_the_largest_gtt_is_the_one_read(tmp_path: Path) -> None:
    make_card(tmp_path, "card0", gtt_total=GIB, busy=99)
    make_card(tmp_path, "card1", gtt_total=96 * GIB, busy=7)

    reading = read_gpu(tmp_path)

    assert reading is not None and (reading.card, reading.busy_percent) == ("card1", 7.0)


def test_newer_kernels_power1_input_is_read_too(tmp_path: Path) -> None:
    make_card(tmp_path, "card0", gtt_total=GIB, power_micro=9_000_000, power_file="power1_input")

    reading = read_gpu(tmp_path)

    assert reading is not None and reading.power_w == 9.0


def test_missing_parts_are_none_and_no_card_is_no_reading(tmp_path: Path) -> None:
    assert read_gpu(tmp_path) is None
    assert read_gpu(tmp_path / "absent") is None
    make_card(tmp_path, "card0", gtt_total=GIB, temp_milli=None, power_micro=None)

    assert read_gpu(tmp_path) == Gpu(card="card0", busy_percent=12.0, temperature_c=None, power_w=None)


async def test_the_status_carries_gpu_and_follows_it(aiohttp_client: Any, tmp_path: Path) -> None:
    device = make_card(tmp_path / "drm", "card0", gtt_total=96 * GIB, busy=10)
    config = build(
        {
            "server": {"state_dir": str(tmp_path / "state")},
            "comfyui": {"url": "http://127.0.0.1:9", "probe_interval": 5.0},
            "telemetry": {"sysfs_root": str(tmp_path / "drm"), "gpu_interval": 0.05, "busy_step": 5},
        }
    )
    api = await aiohttp_client(create_app(config))
    first = (await (await api.get("/api/comfyui/status")).json())["gpu"]
    # published at the [telemetry] steps: 23.5 W reads 24 W at power_step 1
    assert first == {"card": "card0", "busy_percent": 10.0, "temperature_c": 48.0, "power_w": 24.0}

    (device / "gpu_busy_percent").write_text("90\n")  # a render started: more than a step, at once

    async with asyncio.timeout(10):
        while (await (await api.get("/api/comfyui/status")).json())["gpu"]["busy_percent"] != 90.0:
            await asyncio.sleep(0.05)
    # the memory gauge reads the same card
    memory = (await (await api.get("/api/comfyui/status")).json())["memory"]
    assert (memory["gtt_source"], memory["gtt_used"]) == ("sysfs", GIB)


async def test_a_host_without_amdgpu_has_gpu_null(api: Any) -> None:
    status = await (await api.get("/api/comfyui/status")).json()

    assert status["gpu"] is None


def test_mqtt_carries_gpu_on_its_own_retained_topic() -> None:
    topics = Topics("hal0", "homeassistant", "n")
    gpu = {"card": "card0", "busy_percent": 35.0, "temperature_c": 51.0, "power_w": 20.0}

    payloads = state_payloads(topics, {"gpu": gpu})

    assert topics.gpu == "hal0/gpu/telemetry"
    assert json.loads(payloads[topics.gpu]) == gpu
    assert json.loads(state_payloads(topics, {"gpu": None})[topics.gpu]) is None
