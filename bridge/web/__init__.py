"""The Image-Gen page's static files (index.html, app.css, app.js): plain HTML/CSS/JS, no build step.

Shipped as package data and served by :mod:`hal0_bridge.http.page`; the page lives on
``GET /api/events`` and calls the REST API like any other client.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every servable file of the web package, by file name."""
    assets: dict[str, Asset] = {}
    for entry in resources.files(__name__).iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in CONTENT_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            assets[entry.name] = Asset(body, CONTENT_TYPES[suffix], etag)
    return assets


def asset_names() -> list[str]:
    """The files served under ``/ui/`` (everything but the page itself), for the OpenAPI document."""
    return sorted(name for name in load_assets() if name != INDEX)
