"""The stand-in's frontend routes and middlewares, for testing a proxy in front of ComfyUI.

No capture covers them; they follow server.py at the recorded commit (STANDIN-NOTES.md): get_root
serves index.html with no-cache headers (also as /api/), the frontend's files come from a static
route added last, cache_control marks scripts no-cache, and origin_only refuses
a browser request whose Origin is another host:port than the loopback Host it was sent to.
"""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.support.comfyui_standin import WEB_ROOT, ComfyStandIn
from tests.support.standin_client import example_body


@pytest.fixture
async def comfy():
    async with ComfyStandIn() as standin:
        yield standin


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/api/"])
async def test_root_serves_the_index_page_uncached(comfy, session, path):
    async with session.get(comfy.url + path) as resp:
        body = await resp.text()
        headers = resp.headers
    assert (resp.status, resp.content_type) == (200, "text/html")
    assert (headers["Cache-Control"], headers["Pragma"], headers["Expires"]) == ("no-cache", "no-cache", "0")
    assert body == (WEB_ROOT / "index.html").read_text()


async def test_the_index_pages_script_is_a_relative_path_that_is_served(comfy, session):
    async with session.get(comfy.url + "/") as resp:
        page = await resp.text()
    (src,) = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert src.startswith("./")  # so the page also works behind a path prefix
    async with session.get(f"{comfy.url}/{src[2:]}") as resp:
        assert resp.status == 200
        assert "javascript" in resp.content_type
        assert resp.headers["Cache-Control"] == "no-cache"  # cache_control for .js
        assert "Etag" in resp.headers and "Last-Modified" in resp.headers  # a static file


async def test_a_missing_static_file_is_404(comfy, session):
    async with session.get(f"{comfy.url}/assets/nope.js") as resp:
        assert resp.status == 404


async def test_api_routes_win_over_the_static_route(comfy, session):
    async with session.get(f"{comfy.url}/system_stats") as resp:
        assert (resp.status, resp.content_type) == (200, "application/json")


async def test_a_foreign_origin_on_a_loopback_host_is_refused(comfy, session):
    headers = {"Origin": "http://127.0.0.1:1"}
    async with session.post(f"{comfy.url}/prompt", json=example_body(), headers=headers) as resp:
        assert (resp.status, await resp.read()) == (403, b"")
    assert comfy.counters.prompts_submitted == 0


async def test_the_same_origin_is_let_through(comfy, session):
    headers = {"Origin": comfy.url}
    async with session.post(f"{comfy.url}/prompt", json=example_body(), headers=headers) as resp:
        assert resp.status == 200


async def test_an_origin_without_port_is_compared_by_host_name(comfy, session):
    async with session.get(f"{comfy.url}/queue", headers={"Origin": "http://127.0.0.1"}) as resp:
        assert resp.status == 200


async def test_a_non_loopback_host_is_not_checked(comfy, session):
    headers = {"Host": f"comfy.example:{comfy.port}", "Origin": "http://elsewhere.example:9999"}
    async with session.get(f"{comfy.url}/queue", headers=headers) as resp:
        assert resp.status == 200


async def test_options_is_answered_empty(comfy, session):
    async with session.options(f"{comfy.url}/prompt") as resp:
        assert (resp.status, await resp.read()) == (200, b"")
