"""The ``container`` slot backend and systemd slots with ``container_name``, against the fake
podman/docker CLI (tests/support/fake_container.py, whose containers are real processes), plus the
real docker CLI without an engine and, where it can run here, a real podman."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hal0_bridge import config as config_mod
from hal0_bridge.config import Config, ConfigError
from hal0_bridge.gpu.slots.base import SlotError
from hal0_bridge.gpu.slots.container import LABEL_SLOT, LABEL_SPEC
from hal0_bridge.gpu.slots.manager import SlotManager
from hal0_bridge.status import StatusHub

from tests.support import fake_container, fake_llama

REPO = Path(__file__).resolve().parents[3]
IMAGE = "localhost/comfyui-standin:latest"
NAME = "hal0-slot-img"


def standin_command(port: int, *flags: str) -> list[str]:
    return [sys.executable, "-m", "tests.support.comfyui_standin", "--host", "127.0.0.1", "--port", str(port), *flags]


def container_slot(port: int, **extra: Any) -> dict[str, Any]:
    """The img slot as a container of IMAGE, ComfyUI (the stand-in) on host port ``port``."""
    return {
        "group": "img",
        "backend": "container",
        "image": IMAGE,
        "args": ["--network", "host", "-w", str(REPO)],
        "command": standin_command(port),
        "url": f"http://127.0.0.1:{port}",
        "ready_timeout": 15.0,
        "stop_timeout": 2.0,
        "probe_timeout": 2.0,
        "poll_interval": 0.2,
        **extra,
    }


def make_config(tmp_path: Path, slots: dict[str, dict[str, Any]]) -> Config:
    return config_mod.build({"server": {"state_dir": str(tmp_path / "state")}, "slots": slots})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def manager_for(tmp_path: Path, session: aiohttp.ClientSession):  # type: ignore[no-untyped-def]
    made: list[SlotManager] = []

    async def build(slots: dict[str, dict[str, Any]], hub: StatusHub | None = None) -> SlotManager:
        manager = SlotManager.from_config(make_config(tmp_path, slots), hub or StatusHub(), session)
        made.append(manager)
        await manager.start()
        return manager

    yield build
    for manager in made:
        await manager.stop()


@pytest.fixture
def image(containers: Path) -> Path:
    """IMAGE exists locally (its own command: the stand-in on a port nobody uses)."""
    fake_container.add_image(containers, IMAGE, standin_command(9), workdir=str(REPO))
    return containers


def verbs(state: Path) -> list[list[str]]:
    """The runtime calls that change something (inspect and logs left out)."""
    return [c for c in fake_container.calls(state) if c[0] not in ("container", "inspect", "logs")]


# ------------------------------------------------------------------------------ lifecycle


@pytest.mark.parametrize("runtime", ["podman", "docker"])
async def test_container_slot_is_created_started_and_ready(manager_for, image, runtime) -> None:  # type: ignore[no-untyped-def]
    hub = StatusHub()
    port = fake_llama.free_port()
    manager = await manager_for({"img": container_slot(port, runtime=runtime)}, hub)
    assert hub.status.container == "absent"  # no such container yet

    await manager.get("img").start()

    assert manager.get("img").state == "ready"
    assert hub.status.container == "running"
    created = fake_container.read_container(image, NAME)
    assert created is not None and created["Config"]["Cmd"] == standin_command(port)
    assert created["Config"]["Labels"][LABEL_SLOT] == "img" and LABEL_SPEC in created["Config"]["Labels"]
    assert created["HostConfig"]["NetworkMode"] == "host"
    assert verbs(image) == [
        ["create", "--name", NAME, "--pull=never", "--label", f"{LABEL_SLOT}=img",
         "--label", f"{LABEL_SPEC}={created['Config']['Labels'][LABEL_SPEC]}",
         "--network", "host", "-w", str(REPO), IMAGE, *standin_command(port)],
        ["start", NAME],
    ]  # fmt: skip
    assert ["container", "inspect", NAME] in fake_container.calls(image)


@pytest.mark.parametrize("runtime", ["podman", "docker"])
async def test_stop_runs_stop_with_the_timeout_and_the_container_shows_exited(  # type: ignore[no-untyped-def]
    manager_for, image, runtime
) -> None:
    hub = StatusHub()
    manager = await manager_for({"img": container_slot(fake_llama.free_port(), runtime=runtime)}, hub)
    slot = manager.get("img")
    await slot.start()

    await slot.stop()

    assert verbs(image)[-1] == ["stop", "-t", "2", NAME]
    assert fake_container.read_container(image, NAME)["State"]["Status"] == "exited"
    assert (slot.state, hub.status.container, slot.error) == ("offline", "exited", None)


async def test_a_second_start_reuses_the_container(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    manager = await manager_for({"img": container_slot(fake_llama.free_port())})
    slot = manager.get("img")
    await slot.start()
    first_id = fake_container.read_container(image, NAME)["Id"]
    await slot.stop()

    await slot.start()

    assert fake_container.read_container(image, NAME)["Id"] == first_id
    assert [v[0] for v in verbs(image)] == ["create", "start", "stop", "start"]
    assert slot.state == "ready"


async def test_start_of_a_running_container_is_a_noop(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    """E.g. a bridge restarted while ComfyUI keeps running: the container is found, not restarted."""
    port = fake_llama.free_port()
    first = await manager_for({"img": container_slot(port)})
    await first.get("img").start()
    await first.stop()  # containers outlive the bridge
    hub = StatusHub()

    second = await manager_for({"img": container_slot(port)}, hub)
    await second.get("img").start()

    assert [v[0] for v in verbs(image)] == ["create", "start"]
    assert hub.status.container == "running" and second.get("img").state == "ready"


async def test_changed_args_recreate_a_stopped_container_the_bridge_made(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    port = fake_llama.free_port()
    first = await manager_for({"img": container_slot(port)})
    await first.get("img").start()
    await first.get("img").stop()
    old_id = fake_container.read_container(image, NAME)["Id"]
    changed = container_slot(port, args=["--network", "host", "-w", str(REPO), "-e", "HAL0_TEST=1"])

    second = await manager_for({"img": changed})
    await second.get("img").start()

    assert [v[0] for v in verbs(image)] == ["create", "start", "stop", "rm", "create", "start"]
    data = fake_container.read_container(image, NAME)
    assert data["Id"] != old_id and "HAL0_TEST=1" in data["Config"]["Env"]


async def test_a_container_made_by_hand_is_used_as_is(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    port = fake_llama.free_port()
    subprocess.run(["podman", "create", "--name", NAME, "-w", str(REPO), IMAGE, *standin_command(port)],
                   check=True, capture_output=True)  # fmt: skip
    manager = await manager_for({"img": container_slot(port, args=["--anything-else"], create=False)})

    await manager.get("img").start()

    assert [v[0] for v in verbs(image)] == ["create", "start"]  # ours: only the start
    assert manager.get("img").state == "ready"


# ------------------------------------------------------------------------------ status container


async def test_status_container_is_the_containers_own_state(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    hub = StatusHub()
    manager = await manager_for({"img": container_slot(fake_llama.free_port())}, hub)
    seen = [hub.status.container]
    await manager.get("img").start()
    seen.append(hub.status.container)
    subprocess.run(["podman", "stop", "-t", "1", NAME], check=True, capture_output=True)  # by hand, not the bridge
    await manager.refresh()
    seen.append(hub.status.container)
    subprocess.run(["podman", "rm", NAME], check=True, capture_output=True)
    await manager.refresh()
    seen.append(hub.status.container)

    assert seen == ["absent", "running", "exited", "absent"]


@pytest.mark.parametrize(
    ("unit_state", "container", "expected"),
    [
        ("active running", "running", ("starting", "running")),  # unit up, ComfyUI not answering on :9
        ("active running", None, ("starting", "absent")),  # e.g. podman run still pulling
        ("inactive dead", "exited", ("offline", "exited")),
        ("inactive dead", None, ("offline", "absent")),  # Quadlet's --rm: gone after stop
        ("failed failed", "exited", ("error", "exited")),
    ],
)
async def test_systemd_slot_with_container_name_reads_the_container(  # type: ignore[no-untyped-def]
    manager_for, systemctl, image, unit_state, container, expected
) -> None:
    (systemctl / "units" / "hal0-slot@img.service").write_text(unit_state + "\n")
    if container is not None:  # the unit's podman run, done by hand here
        subprocess.run(["podman", "run", "-d", "--name", "comfy", IMAGE, "sleep", "30"], check=True, capture_output=True)
        if container == "exited":
            subprocess.run(["podman", "stop", "-t", "1", "comfy"], check=True, capture_output=True)
    hub = StatusHub()

    manager = await manager_for(
        {"img": {"group": "img", "backend": "systemd", "container_name": "comfy", "url": "http://127.0.0.1:9",
                 "probe_timeout": 2.0}}, hub,
    )  # fmt: skip

    assert (manager.get("img").state, hub.status.container) == expected
    assert ["container", "inspect", "comfy"] in fake_container.calls(image)


async def test_systemd_slot_without_container_name_never_runs_a_runtime(manager_for, systemctl, image) -> None:  # type: ignore[no-untyped-def]
    (systemctl / "units" / "hal0-slot@img.service").write_text("active running\n")
    hub = StatusHub()

    await manager_for({"img": {"group": "img", "backend": "systemd", "url": "http://127.0.0.1:9"}}, hub)

    assert hub.status.container == "running"  # derived from the unit, as before
    assert fake_container.calls(image) == []


# ------------------------------------------------------------------------------ errors


async def test_missing_runtime_binary_fails_the_start_with_the_os_error(  # type: ignore[no-untyped-def]
    manager_for, tmp_path, monkeypatch
) -> None:
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    hub = StatusHub()
    manager = await manager_for({"img": container_slot(fake_llama.free_port())}, hub)
    assert (manager.get("img").state, hub.status.container) == ("error", "absent")

    with pytest.raises(SlotError, match=r"cannot run podman: \[Errno 2\] No such file or directory: 'podman'"):
        await manager.get("img").start()

    assert manager.get("img").state == "error" and "cannot run podman" in manager.get("img").error


@pytest.mark.parametrize(
    ("runtime", "message"),
    [("podman", "Error: inspecting object: no such container hal0-slot-img"),
     ("docker", "Error response from daemon: No such container: hal0-slot-img")],
)  # fmt: skip
async def test_absent_container_with_create_false_fails_with_the_runtimes_message(  # type: ignore[no-untyped-def]
    manager_for, image, runtime, message
) -> None:
    manager = await manager_for({"img": container_slot(fake_llama.free_port(), runtime=runtime, create=False)})

    with pytest.raises(SlotError) as err:
        await manager.get("img").start()

    assert str(err.value) == f"container {NAME} does not exist and create = false: {message}"
    assert verbs(image) == []  # nothing created


@pytest.mark.parametrize(
    ("runtime", "message"),
    [("podman", "Error: localhost/missing:1: image not known"),
     ("docker", "Error response from daemon: No such image: localhost/missing:1")],
)  # fmt: skip
async def test_missing_image_fails_the_create_with_the_runtimes_message_and_a_hint(  # type: ignore[no-untyped-def]
    manager_for, image, runtime, message
) -> None:
    manager = await manager_for({"img": container_slot(fake_llama.free_port(), runtime=runtime, image="localhost/missing:1")})

    with pytest.raises(SlotError) as err:
        await manager.get("img").start()

    assert str(err.value) == (
        f"{runtime} create {NAME} failed: {message} (pull it first: {runtime} pull localhost/missing:1)"
    )
    assert fake_container.read_container(image, NAME) is None


async def test_container_that_exits_right_after_start_reports_code_and_last_output(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    crash = [sys.executable, "-c", "import sys; print('RuntimeError: No HIP GPUs are available', file=sys.stderr); sys.exit(3)"]
    hub = StatusHub()
    manager = await manager_for({"img": container_slot(fake_llama.free_port(), command=crash)}, hub)

    with pytest.raises(SlotError) as err:
        await manager.get("img").start()

    assert str(err.value) == (
        f"slot img exited before it was ready (container {NAME} exited with code 3; "
        "last output: RuntimeError: No HIP GPUs are available)"
    )
    assert (manager.get("img").state, hub.status.container) == ("error", "exited")


async def test_command_that_cannot_run_fails_the_start_with_the_runtimes_message(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    manager = await manager_for({"img": container_slot(fake_llama.free_port(), command=["/opt/ComfyUI/nope.sh"])})

    with pytest.raises(SlotError, match=r"podman start hal0-slot-img failed: Error: unable to start container .*"
                                        r"executable file `/opt/ComfyUI/nope.sh` not found"):  # fmt: skip
        await manager.get("img").start()


async def test_stop_of_a_container_that_ignores_sigterm_ends_in_sigkill(manager_for, image) -> None:  # type: ignore[no-untyped-def]
    port = fake_llama.free_port()
    stubborn = container_slot(port, command=fake_llama.command(port, "--ignore-sigterm"), ready_path="/health",
                              stop_timeout=0.5)  # fmt: skip
    manager = await manager_for({"img": stubborn})
    slot = manager.get("img")
    await slot.start()

    await slot.stop()

    assert verbs(image)[-1] == ["stop", "-t", "1", NAME]  # whole seconds, rounded up
    state = fake_container.read_container(image, NAME)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)
    assert slot.state == "offline"


async def test_docker_cli_without_an_engine_fails_with_its_own_message(manager_for) -> None:  # type: ignore[no-untyped-def]
    """The real docker CLI (no fake on PATH): with no daemon it says so, and the slot reports it."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI on this machine")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0:
        pytest.skip("a docker engine answers here; this test is about a CLI without one")
    hub = StatusHub()
    manager = await manager_for({"img": container_slot(fake_llama.free_port(), runtime="docker")}, hub)

    with pytest.raises(SlotError, match="docker container inspect hal0-slot-img failed: .*Cannot connect to the Docker daemon"):
        await manager.get("img").start()

    assert hub.status.container == "absent" and manager.get("img").state == "error"


# ------------------------------------------------------------------------------ config


def test_container_name_defaults_to_hal0_slot_name(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {"img": {"group": "img", "backend": "container", "image": IMAGE}})

    assert cfg.slots["img"].container_name == "hal0-slot-img"
    assert cfg.slots["img"].runtime == "podman" and cfg.slots["img"].create is True


def test_name_and_container_name_both_set_the_container(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, {
        "img": {"group": "img", "backend": "container", "image": IMAGE, "name": "comfyui"},
        "llm": {"group": "llm", "backend": "systemd", "container_name": "llama"},
    })  # fmt: skip

    assert (cfg.slots["img"].container_name, cfg.slots["llm"].container_name) == ("comfyui", "llama")


def test_container_backend_needs_an_image_when_it_may_create(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'slots.img.image: required for backend "container" with create = true'):
        make_config(tmp_path, {"img": {"group": "img", "backend": "container"}})

    assert make_config(tmp_path, {"img": {"group": "img", "backend": "container", "create": False}})


def test_a_bad_container_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slots.img.name: expected a container name"):
        make_config(tmp_path, {"img": {"group": "img", "backend": "container", "image": IMAGE, "name": "-rm"}})


def test_an_unknown_runtime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"slots.img.runtime"):
        make_config(tmp_path, {"img": {"group": "img", "backend": "container", "image": IMAGE, "runtime": "lxc"}})


# ------------------------------------------------------------------------------ a real podman


def podman_can_run(tmp_path: Path) -> tuple[dict[str, str], str]:
    """Import a tiny image (an empty root with the host's /usr and this checkout mounted in) and run
    ``true`` in it; returns (extra environment, "") on success or ({}, why not)."""
    if shutil.which("podman") is None:
        return {}, "podman is not installed"
    rootfs = tmp_path / "rootfs"
    for d in ("usr", "etc", "tmp", "proc", "dev", "sys", "run", "root", "var/tmp"):
        (rootfs / d).mkdir(parents=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        (rootfs / link).symlink_to(f"usr/{link}")
    tar = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
    imported = subprocess.run(["podman", "import", str(tar), REAL_IMAGE], capture_output=True, text=True, timeout=120)
    if imported.returncode != 0:
        return {}, f"podman import: {imported.stderr.strip()}"
    # Sandboxes (this test machine: cgroup v1 hybrid, hard ulimits below podman's defaults) need
    # runc and explicit ulimits; a normal host runs with podman's defaults.
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n[engine]\nruntime = "runc"\n')
    why = []
    for env in ({}, {"CONTAINERS_CONF": str(conf)}):
        probe = subprocess.run(["podman", "run", "--rm", "-v", "/usr:/usr:ro", REAL_IMAGE, "/usr/bin/true"],
                               capture_output=True, text=True, timeout=120, env={**os.environ, **env})  # fmt: skip
        if probe.returncode == 0:
            return env, ""
        why.append(probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit {probe.returncode}")
    return {}, "podman cannot run a container here: " + " / ".join(why)


REAL_IMAGE = "localhost/hal0-test-rootfs:latest"


async def test_real_podman_runs_the_standin_as_the_img_slot(tmp_path, monkeypatch, manager_for) -> None:  # type: ignore[no-untyped-def]
    env, why = await asyncio.to_thread(podman_can_run, tmp_path)
    if why:
        pytest.skip(why)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    name = f"hal0-test-{os.getpid()}"
    port = fake_llama.free_port()
    mounts = {str(REPO), os.path.realpath(sys.base_prefix), sys.prefix}
    args = ["--network", "host", "-w", str(REPO), "-v", "/usr:/usr:ro"]
    for path in sorted(mounts):
        args += ["-v", f"{path}:{path}:ro"]
    hub = StatusHub()
    try:
        manager = await manager_for(
            {"img": container_slot(port, image=REAL_IMAGE, name=name, args=args, ready_timeout=60.0, probe_timeout=10.0)},
            hub,
        )
        assert hub.status.container == "absent"

        await manager.get("img").start()
        assert (manager.get("img").state, hub.status.container) == ("ready", "running")
        await manager.get("img").stop()

        assert (manager.get("img").state, hub.status.container) == ("offline", "exited")
        status = subprocess.run(["podman", "container", "inspect", "--format", "{{.State.Status}}", name],
                                capture_output=True, text=True, check=True)  # fmt: skip
        assert status.stdout.strip() == "exited"
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True, timeout=60)
