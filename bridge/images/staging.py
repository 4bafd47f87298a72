"""Putting an edit's image (and mask) where ComfyUI's LoadImage can read them, with bounded disk.

ComfyUI has no route that deletes an input file (``server.py``: ``/upload/image``, ``/upload/mask``,
``/view``; nothing removes), so unique names per edit would fill its disk for ever. Instead the
bridge owns a fixed pool of ``image.edit_slots`` name pairs in ComfyUI's **temp** folder, subfolder
``hal0``: an edit takes a free slot, uploads with ``overwrite=true`` under that slot's names, and
gives the slot back when its render is over. So ComfyUI never holds more than ``edit_slots`` x
(3 image extensions + 1 mask) of our files, whatever the number of edits, and ComfyUI empties its
temp folder itself at start and exit (``main.py`` ``cleanup_temp``). LoadImage reads them as
``hal0/<name> [temp]`` (``folder_paths.annotated_filepath``); its ``IS_CHANGED`` is the file's
sha256, so a slot reused with other bytes never hits a stale node cache.

A slot stays taken until the render that reads it has ended, so no upload overwrites a file a queued
prompt has yet to load; a request waits for a free slot when all are taken.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..comfyui.client import ComfyUIClient, Uploaded
from .inputs import EditInput

SUBFOLDER = "hal0"
UPLOAD_TYPE = "temp"


@dataclass(frozen=True, slots=True)
class Staged:
    """The LoadImage names of one staged edit (``mask`` is the image itself when its alpha is the mask)."""

    image: str
    mask: str
    upload_s: float


class EditStaging:
    def __init__(self, client: ComfyUIClient, slots: int, prefix: str) -> None:
        self._client = client
        self._prefix = prefix  # the bridge's node id: two bridges on one ComfyUI keep apart
        # last in, first out: one edit after another always reuses slot 0's files
        self._free: asyncio.LifoQueue[int] = asyncio.LifoQueue()
        for slot in reversed(range(slots)):
            self._free.put_nowait(slot)
        self.slots = slots

    def names(self, slot: int, edit: EditInput) -> tuple[str, str | None]:
        """The file names slot ``slot`` uses for this edit (the image keeps its format's extension)."""
        base = f"{self._prefix}-edit{slot}"
        return f"{base}-image{edit.image.extension}", (f"{base}-mask.png" if edit.mask is not None else None)

    @asynccontextmanager
    async def stage(self, edit: EditInput) -> AsyncIterator[Staged]:
        """Take a slot, upload (image and mask at once), yield the names; the slot is free again after."""
        slot = await self._free.get()
        try:
            started = time.monotonic()
            image_name, mask_name = self.names(slot, edit)
            uploads = [self._upload(edit.image.data, image_name)]
            if edit.mask is not None and mask_name is not None:
                uploads.append(self._upload(edit.mask.data, mask_name))
            results = await asyncio.gather(*uploads, return_exceptions=True)  # both end before we go on
            done: list[Uploaded] = []
            for result in results:
                if isinstance(result, BaseException):
                    raise result
                done.append(result)
            image = done[0].load_name
            mask = done[1].load_name if len(done) > 1 else image
            yield Staged(image, mask, round(time.monotonic() - started, 4))
        finally:
            self._free.put_nowait(slot)

    async def _upload(self, data: bytes, name: str) -> Uploaded:
        return await self._client.upload_image(data, name, subfolder=SUBFOLDER, type_=UPLOAD_TYPE, overwrite=True)
