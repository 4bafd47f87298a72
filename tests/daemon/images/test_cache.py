"""The image cache: atomic writes, bounds, eviction order, strict names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hal0_bridge.errors import ApiError
from hal0_bridge.images.cache import ImageCache


async def test_store_then_serve_round_trips(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path, max_images=10, max_bytes=10_000)
    await cache.open()
    name = await cache.store(b"png-bytes")
    assert cache.path(name).read_bytes() == b"png-bytes"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


async def test_oldest_is_evicted_by_count(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path, max_images=2, max_bytes=10_000)
    await cache.open()
    names = [await cache.store(bytes([i]) * 10) for i in range(3)]
    with pytest.raises(ApiError) as info:
        cache.path(names[0])
    assert info.value.code == "image.cache_miss"
    assert not (tmp_path / names[0]).exists()
    assert cache.path(names[2]).exists()
    assert cache.stats.images == 2


async def test_oldest_is_evicted_by_bytes(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path, max_images=100, max_bytes=2500)
    await cache.open()
    names = [await cache.store(b"x" * 1000) for _ in range(3)]
    assert cache.stats.bytes == 2000
    assert not (tmp_path / names[0]).exists()


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "..%2f..%2fetc%2fpasswd", "hal0-bridge.toml", "ABCDEF0123456789ABCDEF0123456789.png",
     "0123456789abcdef0123456789abcdef.png"],
)
async def test_only_names_it_wrote_are_served(tmp_path: Path, name: str) -> None:
    (tmp_path / "other.png").write_bytes(b"not ours")
    cache = ImageCache(tmp_path, max_images=10, max_bytes=10_000)
    await cache.open()
    with pytest.raises(ApiError) as info:
        cache.path(name)
    assert info.value.status == 404


async def test_restart_reindexes_its_own_files_oldest_first(tmp_path: Path) -> None:
    first = ImageCache(tmp_path, max_images=10, max_bytes=10_000)
    await first.open()
    a = await first.store(b"a")
    b = await first.store(b"b")
    os.utime(tmp_path / a, (1, 1))
    (tmp_path / ".tmp-crashed.png").write_bytes(b"half")
    second = ImageCache(tmp_path, max_images=1, max_bytes=10_000)
    await second.open()
    assert second.path(b).exists()
    with pytest.raises(ApiError):
        second.path(a)
    assert not (tmp_path / ".tmp-crashed.png").exists()


async def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    cache = ImageCache(blocker / "cache", max_images=10, max_bytes=10_000)
    with pytest.raises(ApiError) as info:
        await cache.store(b"x")
    assert info.value.code == "image.cache_write_failed"
    assert cache.stats.images == 0
