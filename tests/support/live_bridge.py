"""A real bridge app on a real loopback port, and the headless Chromium that looks at its page.

``LiveBridge`` serves ``create_app`` in the caller's event loop; ``stop``/``start`` keep the port, like
a daemon restart. ``process_slots`` gives the slot tables of a bridge with an arbiter: the llama.cpp
stand-in as LLM slot and the ComfyUI stand-in as img slot, both real processes the bridge starts.
``launch_chromium`` starts Debian's chromium through Playwright (never Playwright's own download).
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# docs/NOTES-testing: what Debian's chromium needs to run headless as root in a container
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveBridge:
    raw_config: dict[str, Any]
    port: int = field(default_factory=free_port)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bridge(self) -> Any:
        from hal0_bridge.http.server import BRIDGE_KEY

        assert self.runner is not None
        return self.runner.app[BRIDGE_KEY]

    async def start(self) -> None:
        from hal0_bridge.app import create_app
        from hal0_bridge.config import build

        server = {**self.raw_config.get("server", {}), "port": self.port}
        config = build({**self.raw_config, "server": server})
        # a short grace: open SSE streams (the page's) would otherwise hold the stop
        self.runner = web.AppRunner(create_app(config), shutdown_timeout=0.5, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def process_slots(comfy_port: int, *, timeouts: dict[str, Any] | None = None) -> dict[str, Any]:
    """``[slots]`` for a bridge with an arbiter: one llama.cpp stand-in, the ComfyUI stand-in as img slot."""
    from tests.support import fake_llama

    llm_port = fake_llama.free_port()
    common = {"cwd": str(REPO), "ready_timeout": 30.0, "stop_timeout": 5.0, "drain_timeout": 1.0, **(timeouts or {})}
    return {
        "llm": {
            "group": "llm", "backend": "process", "command": fake_llama.command(llm_port), "autostart": True,
            "url": f"http://127.0.0.1:{llm_port}", "ready_path": "/health", **common,
        },
        "img": {
            "group": "img", "backend": "process",
            "command": [sys.executable, "-m", "tests.support.comfyui_standin", "--host", "127.0.0.1",
                        "--port", str(comfy_port)],
            "url": f"http://127.0.0.1:{comfy_port}", "ready_path": "/system_stats", **common,
        },
    }  # fmt: skip


async def launch_chromium(playwright: Any) -> Any:
    return await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def save_small_png(png: bytes, out: Path) -> None:
    """A screenshot for docs/: 256 colours (about a sixth of the bytes, the same to the eye)."""
    import io

    from PIL import Image

    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
