"""The arbiter with a container img slot (fake podman/docker, real processes): the handover round
trip, and the container failures a switch must report with the runtime's message and roll back."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.gpu import test_arbiter
from tests.daemon.gpu.test_arbiter import REPO, RigFactory
from tests.support import fake_container

rig_factory = test_arbiter.rig_factory  # the shared rig fixture

IMAGE = "localhost/comfyui-standin:latest"
NAME = "hal0-slot-comfy"  # the default container name of slot "comfy"


def container_img(**extra: Any) -> dict[str, Any]:
    """The rig's img slot "comfy" as a container; its command (the stand-in) runs inside."""
    return {"backend": "container", "image": IMAGE, "args": ["--network", "host", "-w", str(REPO)], **extra}


@pytest.fixture
def image(containers: Path) -> Path:
    fake_container.add_image(containers, IMAGE, ["/bin/false"])  # the rig always gives a command
    return containers


def verbs(state: Path) -> list[str]:
    return [c[0] for c in fake_container.calls(state) if c[0] not in ("container", "inspect", "logs")]


@pytest.mark.parametrize("runtime", ["podman", "docker"])
async def test_round_trip_with_a_container_img_slot(rig_factory: RigFactory, image: Path, runtime: str) -> None:
    rig = await rig_factory(slot_overrides={"comfy": container_img(runtime=runtime)})
    assert rig.hub.status.container == "absent"

    to_generation = await rig.switch("generation")

    assert to_generation["type"] == "switch_finished" and to_generation["error"] is None
    assert rig.slot_states() == {"llm1": "offline", "comfy": "ready"}
    assert rig.hub.status.container == "running"
    assert verbs(image) == ["create", "start"]

    to_inference = await rig.switch("inference")

    assert to_inference["type"] == "switch_finished"
    assert rig.slot_states() == {"llm1": "ready", "comfy": "ready"}
    assert rig.hub.status.container == "running"  # resident: only ComfyUI's models were freed
    assert (await rig.standin_counters())["free_bodies"] == [{"unload_models": True, "free_memory": True}]
    assert verbs(image) == ["create", "start"]  # never stopped

    again = await rig.switch("generation")

    assert again["type"] == "switch_finished" and verbs(image) == ["create", "start"]
    assert rig.events("llm1") == ["start", "sigterm busy=0", "exit", "start", "sigterm busy=0", "exit"]


def assert_rolled_back(rig: Any, end: dict[str, Any]) -> None:
    assert end["type"] == "switch_failed"
    assert rig.hub.status.switchover.error == end["error"]
    assert rig.arbiter.mode == "inference" and rig.persisted()["mode"] == "inference"
    assert rig.events("llm1") == ["start", "sigterm busy=0", "exit", "start"]
    assert rig.slot_states()["llm1"] == "ready"


async def test_missing_runtime_binary_rolls_back_with_the_os_error(
    rig_factory: RigFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no podman at all (the fake is not installed either)
    rig = await rig_factory(slot_overrides={"comfy": container_img()})

    end = await rig.switch("generation")

    assert end["error"] == "img slot did not start: cannot run podman: [Errno 2] No such file or directory: 'podman'"
    assert_rolled_back(rig, end)
    assert rig.hub.status.container == "absent"


async def test_absent_container_with_create_false_rolls_back_with_the_runtimes_message(
    rig_factory: RigFactory, image: Path
) -> None:
    rig = await rig_factory(slot_overrides={"comfy": container_img(create=False)})

    end = await rig.switch("generation")

    assert end["error"] == (
        f"img slot did not start: container {NAME} does not exist and create = false: "
        f"Error: inspecting object: no such container {NAME}"
    )
    assert_rolled_back(rig, end)
    assert verbs(image) == []


async def test_missing_image_rolls_back_with_the_runtimes_message(rig_factory: RigFactory, image: Path) -> None:
    rig = await rig_factory(slot_overrides={"comfy": container_img(runtime="docker", image="localhost/comfyui:nope")})

    end = await rig.switch("generation")

    assert end["error"] == (
        f"img slot did not start: docker create {NAME} failed: Error response from daemon: No such image: "
        "localhost/comfyui:nope (pull it first: docker pull localhost/comfyui:nope)"
    )
    assert_rolled_back(rig, end)


async def test_container_that_exits_right_after_start_rolls_back_with_its_code_and_output(
    rig_factory: RigFactory, image: Path
) -> None:
    crash = [sys.executable, "-c", "import sys; print('torch: no ROCm device found', file=sys.stderr); sys.exit(3)"]
    rig = await rig_factory(img_command=crash, slot_overrides={"comfy": container_img()})

    end = await rig.switch("generation")

    assert end["error"] == (
        f"ComfyUI not ready: slot comfy exited before it was ready (container {NAME} exited with code 3; "
        "last output: torch: no ROCm device found)"
    )
    assert_rolled_back(rig, end)
    assert verbs(image) == ["create", "start"]  # the rollback's stop finds it already exited
    assert rig.hub.status.container == "exited"
    assert rig.slot_states()["comfy"] == "error"
