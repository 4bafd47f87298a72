"""Bounded ComfyUI disk: the bridge's renders go to ComfyUI's *temp* folder and are removed once cached.

The built-in templates end in ``PreviewImage``, which writes into ComfyUI's temp directory (``type:
"temp"`` in ``executed`` and in ``/history``) instead of ``output/`` — so the image can still be
fetched with ``/view`` after a websocket reconnect, when ``/history`` is the final word (a
``SaveImageWebsocket`` PNG exists only as a frame on the socket and would be lost). ComfyUI empties its
temp directory itself at every start (main.py ``cleanup_temp``); between starts the bridge deletes each
render's files right after it has cached them, when it can see that directory:

* ``[comfyui] temp_dir`` when set, else
* ComfyUI's own ``--temp-directory`` (or ``--base-directory``/temp) from ``/system_stats``
  ``system.argv`` — when that path exists here (same host, or the same path mounted into a container).

Only ``temp`` images are ever deleted, and only inside that directory (no ``..``, no symlink out).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .client import ComfyUIClient, ImageRef
from .errors import ComfyUIError

_LOGGER = logging.getLogger(__name__)


def temp_dir_from_argv(argv: Sequence[str]) -> Path | None:
    """ComfyUI's temp directory as its command line names it (``--temp-directory`` beats
    ``--base-directory``), or None when it uses its default next to main.py (unknown from here)."""
    found: dict[str, str] = {}
    for i, arg in enumerate(argv):
        for flag in ("--temp-directory", "--base-directory"):
            if arg == flag and i + 1 < len(argv):
                found[flag] = argv[i + 1]
            elif arg.startswith(flag + "="):
                found[flag] = arg.split("=", 1)[1]
    if "--temp-directory" in found:
        return Path(found["--temp-directory"])
    if "--base-directory" in found:
        return Path(found["--base-directory"]) / "temp"
    return None


def _inside(base: Path, ref: ImageRef) -> Path | None:
    path = (base / ref.subfolder / ref.filename).resolve()
    root = base.resolve()
    return path if path != root and path.is_relative_to(root) else None


def _unlink(base: Path, refs: list[ImageRef]) -> int:
    removed = 0
    for ref in refs:
        path = _inside(base, ref)
        if path is None:
            _LOGGER.warning("not removing %r: outside ComfyUI's temp directory", ref)
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


class TempOutputs:
    """Removes the temp images of finished renders; finds ComfyUI's temp directory once."""

    def __init__(self, client: ComfyUIClient, configured: str = "") -> None:
        self._client = client
        self._configured = Path(configured).expanduser() if configured else None
        self._dir: Path | None = None
        self._looked = False

    async def directory(self) -> Path | None:
        """The temp directory as seen from here, or None (then ComfyUI's restart cleanup is the bound)."""
        if self._configured is not None:
            return self._configured
        if not self._looked:
            try:
                stats: dict[str, Any] = await self._client.system_stats()
            except ComfyUIError:
                return None  # ask again next time
            self._looked = True
            argv = stats.get("system", {}).get("argv") if isinstance(stats.get("system"), dict) else None
            guess = temp_dir_from_argv([str(a) for a in argv]) if isinstance(argv, list) else None
            if guess is not None and await asyncio.to_thread(os.path.isdir, guess):
                self._dir = guess
            else:
                _LOGGER.info(
                    "ComfyUI's temp directory is not visible here (%s): renders stay there until ComfyUI "
                    "restarts; set [comfyui] temp_dir to let the bridge remove them",
                    guess or "ComfyUI runs without --temp-directory",
                )
        return self._dir

    async def remove(self, refs: Iterable[ImageRef]) -> int:
        """Delete these images from ComfyUI's temp directory (non-temp ones are kept); how many went."""
        temp = [r for r in refs if r.type == "temp"]
        if not temp:
            return 0
        base = await self.directory()
        if base is None:
            return 0
        try:
            return await asyncio.to_thread(_unlink, base, temp)
        except OSError as err:
            _LOGGER.warning("could not remove ComfyUI temp images: %s", err)
            return 0
