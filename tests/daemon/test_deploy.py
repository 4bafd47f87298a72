"""The shipped deploy files: the Quadlet file and the podman unit parse, run the same container with
what ROCm needs, and every TOML example in README.md and deploy/README.md is a valid bridge config."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from hal0_bridge import config as config_mod

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
IMAGE = "docker.io/kyuz0/amd-strix-halo-comfyui:latest"
COMFY_ARGS = ["--listen", "127.0.0.1", "--port", "8188"]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: sections, repeatable keys, backslash continuations, # comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}: bad section line {line!r}"
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path.name}: stray line {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    assert not pending, f"{path.name}: dangling continuation"
    return sections


def run_options(argv: list[str]) -> tuple[list[tuple[str, str]], str, list[str]]:
    """``podman run [OPTIONS] IMAGE COMMAND...`` -> ((option, value) pairs, image, command)."""
    flags = {"--rm", "--replace", "-d", "--init"}
    pairs, i = [], argv.index("run") + 1
    while argv[i].startswith("-"):
        key, eq, value = argv[i].partition("=")
        if eq or key in flags:
            pairs.append((key, value))
            i += 1
        else:
            pairs.append((key, argv[i + 1]))
            i += 2
    return pairs, argv[i], argv[i + 1 :]


def test_quadlet_file_runs_the_strix_halo_image_with_the_rocm_devices() -> None:
    unit = parse_unit(DEPLOY / "hal0-slot-img.container")
    c = unit["Container"]

    assert c["Image"] == [IMAGE] and c["ContainerName"] == ["hal0-slot-img"]
    assert c["AddDevice"] == ["/dev/kfd", "/dev/dri"]
    assert c["SeccompProfile"] == ["unconfined"] and c["Network"] == ["host"] and c["RunInit"] == ["true"]
    assert c["GroupAdd"] == ["keep-groups"]
    targets = [v.split(":")[1] for v in c["Volume"]]
    assert {"/opt/ComfyUI/models", "/opt/ComfyUI/output", "/opt/ComfyUI/input"} <= set(targets)
    exec_argv = shlex.split(c["Exec"][0])
    assert exec_argv[:2] == ["/bin/bash", "-lc"] and " ".join(COMFY_ARGS) in exec_argv[2]
    assert unit.get("Install", {}) == {}  # never enabled at boot: the bridge starts it


def test_podman_unit_runs_the_same_container_as_the_quadlet_file() -> None:
    unit = parse_unit(DEPLOY / "hal0-slot-img-podman.service")
    quadlet = parse_unit(DEPLOY / "hal0-slot-img.container")["Container"]
    argv = shlex.split(unit["Service"]["ExecStart"][0])
    pairs, image, command = run_options(argv)
    opts: dict[str, list[str]] = {}
    for key, value in pairs:
        opts.setdefault(key, []).append(value)

    assert argv[0] == "/usr/bin/podman" and image == IMAGE
    assert opts["--name"] == quadlet["ContainerName"]
    assert opts["--device"] == quadlet["AddDevice"]
    assert opts["--group-add"] == quadlet["GroupAdd"]
    assert opts["--security-opt"] == [f"seccomp={quadlet['SeccompProfile'][0]}"]
    assert opts["--network"] == quadlet["Network"] and "--init" in opts
    assert opts["-v"] == quadlet["Volume"]
    assert command == shlex.split(quadlet["Exec"][0])
    assert unit["Service"]["Type"] == ["notify"] and unit["Service"]["ExecStop"]


def readme_toml_blocks(path: Path = DEPLOY / "README.md") -> list[str]:
    return re.findall(r"```toml\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("block", readme_toml_blocks() + readme_toml_blocks(DEPLOY.parent / "README.md"))
def test_every_toml_example_in_the_readmes_is_a_valid_config(block: str) -> None:
    raw = tomllib.loads(block)
    slots = raw.get("slots", {})
    if slots and not any(s.get("group") == "img" for s in slots.values()):
        raw["slots"]["img"] = {"group": "img"}  # a fragment showing LLM slots only

    config = config_mod.build(raw)

    for name, slot in config.slots.items():
        if slot.backend == "container":
            assert slot.container_name == f"hal0-slot-{name}" and slot.image


def test_the_readme_container_example_matches_the_deploy_files() -> None:
    """The backend "container" example runs what the unit files run (same devices, image, command)."""
    example = next(b for b in readme_toml_blocks() if 'backend = "container"' in b)
    slot = tomllib.loads(example)["slots"]["img"]
    quadlet = parse_unit(DEPLOY / "hal0-slot-img.container")["Container"]

    assert slot["image"] == IMAGE
    assert slot["command"] == shlex.split(quadlet["Exec"][0])
    args = slot["args"]
    for device in quadlet["AddDevice"]:
        assert ["--device", device] == args[args.index(device) - 1 : args.index(device) + 1]
    assert "seccomp=unconfined" in args and "host" in args
