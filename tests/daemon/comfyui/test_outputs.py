"""Bounded ComfyUI disk: renders land in ComfyUI's temp folder and the bridge removes them once cached."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.comfyui.client import ComfyUIClient, ImageRef
from hal0_bridge.comfyui.outputs import TempOutputs, temp_dir_from_argv
from hal0_bridge.config import Config, build

from tests.support.comfyui_standin import ComfyStandIn

CAPTURES = Path(__file__).resolve().parents[2] / "captures"
GEN = "/v1/images/generations"
RENDER = {"prompt": "a lighthouse", "size": "64x64", "model": "sd-1.5-pruned-emaonly", "steps": 1, "n": 2}


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png"))


async def test_renders_are_removed_from_comfyuis_temp_folder_once_cached(
    aiohttp_client: Any, bridge_config: Callable[..., Config], standin: ComfyStandIn
) -> None:
    api: TestClient = await aiohttp_client(create_app(bridge_config(comfyui={"temp_dir": str(standin.temp_dir)})))

    for _ in range(3):
        resp = await api.post(GEN, json=RENDER)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert len(body["data"]) == 2
        assert (await api.get(body["data"][0]["url"])).status == 200  # the bridge's own cache has them

    assert pngs(standin.temp_dir) == [] and pngs(standin.output_dir) == []
    assert standin.counters.prompts_succeeded == 3


async def test_without_a_visible_temp_folder_the_files_stay_for_comfyuis_own_cleanup(
    aiohttp_client: Any, bridge_config: Callable[..., Config], standin: ComfyStandIn
) -> None:
    """The stand-in reports the captured argv (--temp-directory /app/data/temp): not a path here."""
    api: TestClient = await aiohttp_client(create_app(bridge_config()))

    resp = await api.post(GEN, json=RENDER)

    assert resp.status == 200
    assert len(pngs(standin.temp_dir)) == 2 and pngs(standin.output_dir) == []


def test_the_temp_folder_is_read_from_comfyuis_own_command_line() -> None:
    argv = json.loads((CAPTURES / "system_stats.json").read_text())["system"]["argv"]
    assert temp_dir_from_argv(argv) == Path("/app/data/temp")
    assert temp_dir_from_argv(["main.py", "--base-directory=/srv/comfy"]) == Path("/srv/comfy/temp")
    assert temp_dir_from_argv(["main.py", "--base-directory", "/b", "--temp-directory", "/t"]) == Path("/t")
    assert temp_dir_from_argv(["main.py", "--listen"]) is None


async def test_only_temp_images_inside_the_folder_are_removed(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    (temp / "sub").mkdir(parents=True)
    keep_outside = tmp_path / "secret.png"
    for path in (temp / "a.png", temp / "sub" / "b.png", keep_outside, temp / "out.png"):
        path.write_bytes(b"png")
    async with aiohttp.ClientSession() as session:
        outputs = TempOutputs(ComfyUIClient(session, build({}).comfyui, "x"), str(temp))
        removed = await outputs.remove([
            ImageRef("a.png", "", "temp"), ImageRef("b.png", "sub", "temp"),
            ImageRef("secret.png", "..", "temp"), ImageRef("out.png", "", "output"),
            ImageRef("gone.png", "", "temp"),
        ])  # fmt: skip

    assert removed == 2
    assert keep_outside.exists() and (temp / "out.png").exists()
    assert not (temp / "a.png").exists() and not (temp / "sub" / "b.png").exists()
