"""The generated-image cache behind ``GET /api/images/cache/{uuid}.{png,jpg,webp}``.

Files are named ``<uuid4 hex><extension>`` by the cache itself (the extension of the image's output
format, :mod:`.formats`, so the route can name its content type) and written atomically (temp file + rename),
so a reader never sees half an image. Only names in the in-memory index are served: the index is
what this cache wrote (rebuilt from its own directory at start-up), so no other file — and no path
trick — can ever be reached. Bounded by count and bytes; the oldest image goes first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from .. import errors
from ..errors import ApiError
from .formats import BY_EXTENSION, FORMATS, OutputFormat

_LOGGER = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[0-9a-f]{32}(" + "|".join(re.escape(ext) for ext in BY_EXTENSION) + r")$")


@dataclass(frozen=True, slots=True)
class CacheStats:
    images: int
    bytes: int


class ImageCache:
    def __init__(self, directory: Path, *, max_images: int, max_bytes: int) -> None:
        self.directory = directory
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._index: OrderedDict[str, int] = OrderedDict()  # name -> size, oldest first
        self._bytes = 0
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Create the directory and index what an earlier run left, oldest first."""
        await asyncio.to_thread(self._scan)
        await self._evict()

    def _scan(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        found: list[tuple[float, str, int]] = []
        for entry in os.scandir(self.directory):
            if entry.is_file() and NAME_RE.match(entry.name):
                st = entry.stat()
                found.append((st.st_mtime, entry.name, st.st_size))
            elif entry.name.startswith(".tmp-"):
                os.unlink(entry.path)  # a write interrupted by a crash
        for _, name, size in sorted(found):
            self._index[name] = size
            self._bytes += size

    @property
    def stats(self) -> CacheStats:
        return CacheStats(len(self._index), self._bytes)

    async def store(self, data: bytes, fmt: OutputFormat = FORMATS["png"]) -> str:
        """Write one image and return its cache name; raises CACHE_WRITE_FAILED on disk errors."""
        name = f"{uuid.uuid4().hex}{fmt.extension}"
        try:
            await asyncio.to_thread(self._write, name, data)
        except OSError as err:
            _LOGGER.error("image cache %s is not writable: %s", self.directory, err)
            raise ApiError(
                errors.CACHE_WRITE_FAILED,
                f"could not write the image to the cache: {err.strerror or err}",
                details={"cache_dir": str(self.directory)},
            ) from err
        async with self._lock:
            self._index[name] = len(data)
            self._bytes += len(data)
            await self._evict()
        return name

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".tmp-{name}"
        try:
            # No fsync: this is a cache. The rename keeps it atomic (a reader never sees half an
            # image); a power cut may lose the newest files, which costs ~1 ms/image less (bench).
            tmp.write_bytes(data)
            os.replace(tmp, self.directory / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    async def _evict(self) -> None:
        victims: list[str] = []
        while self._index and (len(self._index) > self.max_images or self._bytes > self.max_bytes):
            name, size = self._index.popitem(last=False)
            self._bytes -= size
            victims.append(name)
        if victims:
            await asyncio.to_thread(self._unlink, victims)

    def _unlink(self, names: list[str]) -> None:
        for name in names:
            (self.directory / name).unlink(missing_ok=True)

    def path(self, name: str) -> Path:
        """The file for a served name; anything this cache did not write is a cache miss."""
        if not NAME_RE.match(name) or name not in self._index:
            raise ApiError(errors.CACHE_MISS, "no such image in the cache (it may have been evicted)")
        return self.directory / name

    @staticmethod
    def content_type(name: str) -> str:
        """The content type of a served name (its extension is the format it was stored in)."""
        match = NAME_RE.match(name)
        if match is None:
            raise ApiError(errors.CACHE_MISS, "no such image in the cache (it may have been evicted)")
        return BY_EXTENSION[match.group(1)].content_type
