"""``GET /`` (the Image-Gen page) and ``GET /ui/{name}`` (its assets), from :mod:`hal0_bridge.web`.

The files are read once at start-up and served from memory with an ETag; only names that are in the
package are served (anything else is the 404 envelope), so no path ever reaches the file system.
No token is needed for them (DESIGN §8: the page's static files are open); the page asks for the
token itself when ``GET /api/info`` says ``auth_required``.
"""

from __future__ import annotations

from aiohttp import web

from .. import errors
from ..errors import ApiError
from ..web import INDEX, Asset, load_assets
from .server import Access, route_policy

# Scripts and styles only from the bridge itself, no inline code, no frames; images from anywhere
# (with [server] public_url set, image URLs point at that origin, which may not be this one).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src * data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Cache-Control": "no-cache",  # revalidate: the ETag makes that a 304 until the bridge is upgraded
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


ASSETS_KEY: web.AppKey[dict[str, Asset]] = web.AppKey("page_assets")


def _serve(request: web.Request, name: str) -> web.Response:
    asset = request.app[ASSETS_KEY].get(name)
    if asset is None:
        raise ApiError(errors.NOT_FOUND, f"no route for {request.path}")
    headers = {**HEADERS, "ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


@route_policy(Access.OPEN)
async def index(request: web.Request) -> web.Response:
    return _serve(request, INDEX)


@route_policy(Access.OPEN)
async def asset(request: web.Request) -> web.Response:
    return _serve(request, request.match_info["name"])


def setup(app: web.Application) -> None:
    app[ASSETS_KEY] = load_assets()
    app.router.add_get("/", index)
    app.router.add_get("/ui/{name}", asset)
