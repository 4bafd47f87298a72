"""Every example in README.md and docs/*.md is run, or says why not, so the docs cannot drift.

A fenced block's info string carries a marker after the language:

- ```` ```sh run ```` / ```` ```python run ````: executed against a real bridge on a default install
  (built-in config, no slots, the ComfyUI stand-in as ComfyUI); ``127.0.0.1:8080`` and
  ``localhost:8080`` are pointed at that bridge. It must exit 0.
  The working directory holds ``porch.png`` and ``porch-mask.png`` (1024x1024), the pictures the
  edit examples send.
- ```` ```json output ```` / ```` ```text output ````: what the run block just before it prints.
  JSON is compared value by value (several documents in a row are several answers), except for
  values that differ on every run (``VOLATILE`` keys); ``…`` in text matches anything.
- ```` ```toml config ````: a configuration fragment; it must load with no error and no unknown key.
- ```` ```sh static ```` (any language): shown, not run — e.g. it installs, runs forever, or needs
  hardware. Say why in the text around it.

Blocks in ``sh``, ``bash``, ``json``, ``python`` and ``toml`` must carry one of these markers, so a
new example is picked up (or consciously excluded) the day it is written.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hal0_bridge.app import create_app
from hal0_bridge.config import build, unknown_keys

from tests.support.comfyui_standin import ComfyStandIn
from tests.support.fake_llama import free_port
from tests.support.pictures import mask, picture

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKED_LANGUAGES = {"sh", "bash", "json", "python", "toml"}
MARKERS = {"run", "output", "config", "static"}
FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<info>[^`\n]*)\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.M | re.S)
# differ on every run, or with the machine (memory gauges)
VOLATILE = {"updated_at", "created", "prompt_id", "url", "urls", "timings", "time", "cached", "idle_restore_at",
            "gtt_used", "gtt_total", "ram_used", "ram_total"}  # fmt: skip
RUN_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    line: int
    language: str
    marker: str | None
    body: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        language = words[0] if words else ""
        marker = next((w for w in words[1:] if w in MARKERS), None)
        body = "\n".join(line[len(match["indent"]):] for line in match["body"].splitlines())
        found.append(Block(path, text.count("\n", 0, match.start()) + 1, language, marker, body))
    return found


ALL = [b for path in DOCS for b in blocks(path)]


def pairs() -> list[tuple[Block, Block | None]]:
    """Each run block with the output block right after it, if any."""
    out = []
    for i, block in enumerate(ALL):
        if block.marker == "run":
            following = ALL[i + 1] if i + 1 < len(ALL) and ALL[i + 1].path == block.path else None
            out.append((block, following if following is not None and following.marker == "output" else None))
    return out


def test_every_example_is_marked() -> None:
    unmarked = [b.where for b in ALL if b.language in CHECKED_LANGUAGES and b.marker is None]
    assert not unmarked, f"mark these blocks run, output, config or static: {unmarked}"


def test_every_output_follows_a_run() -> None:
    for i, block in enumerate(ALL):
        if block.marker == "output":
            assert i > 0 and ALL[i - 1].marker == "run" and ALL[i - 1].path == block.path, block.where


@pytest.mark.parametrize("block", [b for b in ALL if b.marker == "config"], ids=lambda b: b.where)
def test_config_examples_load_without_unknown_keys(block: Block) -> None:
    raw = tomllib.loads(block.body)
    build(raw)
    assert unknown_keys(raw) == []


# ------------------------------------------------------------------------------- comparing output


def json_documents(text: str) -> list[Any]:
    decoder, docs, pos = json.JSONDecoder(), [], 0
    text = text.strip()
    while pos < len(text):
        doc, end = decoder.raw_decode(text, pos)
        docs.append(doc)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return docs


def differences(expected: Any, actual: Any, where: str = "$") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{where}: keys {sorted(set(expected) ^ set(actual))} differ"] if set(expected) != set(actual) else []
        for key in expected.keys() & actual.keys():
            if key not in VOLATILE:
                found += differences(expected[key], actual[key], f"{where}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items documented, {len(actual)} real"]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in differences(e, a, f"{where}[{i}]")]
    if expected != actual or type(expected) is not type(actual):
        return [f"{where}: documented {expected!r}, real {actual!r}"]
    return []


def text_matches(expected: str, actual: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expected.strip().split("…"))
    return re.fullmatch(pattern, actual.strip(), re.S) is not None


# ------------------------------------------------------------------------------- running


@pytest.fixture
async def default_install(tmp_path: Path, standin: ComfyStandIn) -> Any:
    """A bridge with the built-in configuration on a free port; ComfyUI is the stand-in."""
    port = free_port()
    config = build({"server": {"port": port, "state_dir": str(tmp_path / "state")}, "comfyui": {"url": standin.url}})
    runner = web.AppRunner(create_app(config), shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def run(block: Block, port: int, cwd: Path) -> str:
    (cwd / "porch.png").write_bytes(picture(1024, 1024))
    (cwd / "porch-mask.png").write_bytes(mask(1024, 1024))
    code = block.body.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("localhost:8080", f"127.0.0.1:{port}")
    argv = ["bash", "-eu", "-c", code] if block.language in ("sh", "bash") else [sys.executable, "-c", code]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    assert proc.returncode == 0, f"{block.where} exited {proc.returncode}: {err.decode()[-1500:]}"
    return out.decode()


@pytest.mark.parametrize(("block", "expected"), pairs(), ids=lambda b: b.where if isinstance(b, Block) else "")
async def test_runnable_examples_do_what_the_docs_say(
    default_install: int, tmp_path: Path, block: Block, expected: Block | None
) -> None:
    out = await run(block, default_install, tmp_path)
    if expected is None:
        return
    if expected.language == "json":
        documented, real = json_documents(expected.body), json_documents(out)
        assert len(documented) == len(real), (block.where, out)
        problems = [d for e, a in zip(documented, real, strict=True) for d in differences(e, a)]
        assert not problems, (expected.where, problems)
    else:
        assert text_matches(expected.body, out), (expected.where, out)
