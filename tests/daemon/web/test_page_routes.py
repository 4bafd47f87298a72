"""``GET /`` and ``/ui/{name}``: only the package's files, the right types, ETags, no token, small."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hal0_bridge.app import create_app
from hal0_bridge.web import CONTENT_TYPES, load_assets

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "bridge" / "web"
PAGE_WEIGHT_LIMIT = 100 * 1024  # issue 14: under 100 KB uncompressed without images


async def test_the_page_is_served_at_the_root(api: TestClient) -> None:
    resp = await api.get("/")
    text = await resp.text()

    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/ui/app.js">' in text
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("name", "content_type"), [("app.js", "text/javascript"), ("app.css", "text/css")])
async def test_assets_are_served_with_their_type(api: TestClient, name: str, content_type: str) -> None:
    resp = await api.get(f"/ui/{name}")

    assert resp.status == 200
    assert resp.headers["Content-Type"].split(";")[0] == content_type
    assert await resp.read() == (WEB / name).read_bytes()


async def test_an_unchanged_asset_is_a_304(api: TestClient) -> None:
    first = await api.get("/ui/app.js")
    etag = first.headers["ETag"]

    again = await api.get("/ui/app.js", headers={"If-None-Match": etag})
    other = await api.get("/ui/app.js", headers={"If-None-Match": '"something-else"'})

    assert again.status == 304 and await again.read() == b""
    assert other.status == 200


@pytest.mark.parametrize(
    "path",
    ["/ui/__init__.py", "/ui/nothing.js", "/ui/..%2F__init__.py", "/ui/%2e%2e/app.py", "/ui/", "/ui/../config.py"],
)
async def test_only_the_packages_page_files_are_served(api: TestClient, path: str) -> None:
    resp = await api.get(path)

    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "request.not_found"


async def test_the_page_needs_no_token(aiohttp_client: Any, bridge_config: Any) -> None:
    api = await aiohttp_client(create_app(bridge_config(server={"token": "page-token"})))

    for path in ("/", "/ui/app.js", "/ui/app.css", "/api/info"):
        assert (await api.get(path)).status == 200, path
    assert (await (await api.get("/api/info")).json())["auth_required"] is True  # the page asks for it


async def test_page_weight_is_under_100_kb(api: TestClient) -> None:
    html = await (await api.get("/")).text()
    linked = re.findall(r'(?:src|href)="(/ui/[^"]+)"', html)
    assert sorted(linked) == ["/ui/app.css", "/ui/app.js"]
    total = len(html.encode()) + sum([len(await (await api.get(p)).read()) for p in linked])

    assert total < PAGE_WEIGHT_LIMIT, total


def test_every_page_file_ships_in_the_wheel() -> None:
    """pyproject's package-data globs cover every file the route would serve."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = project["tool"]["setuptools"]["package-data"]["hal0_bridge.web"]
    served = {p.name for p in WEB.iterdir() if p.suffix in CONTENT_TYPES}
    assert served == set(load_assets())
    for name in served:
        assert any(fnmatch(name, g) for g in globs), name
