"""``GET /api/images/cache/{name}``: serves only what the image cache wrote."""

from __future__ import annotations

from aiohttp import web

from .. import errors
from ..errors import ApiError
from ..images.cache import ImageCache
from .server import Access, route_policy

CACHE_KEY = web.AppKey("image_cache", ImageCache)
IMMUTABLE = "public, max-age=31536000, immutable"


@route_policy(Access.SIGNED)  # <img src> sends no header: the URLs the bridge hands out are signed
async def cached_image(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    cache = request.app[CACHE_KEY]
    path = cache.path(name)
    if not path.is_file():  # removed behind our back
        raise ApiError(errors.CACHE_MISS, "no such image in the cache (it may have been evicted)")
    return web.FileResponse(path, headers={"Content-Type": cache.content_type(name), "Cache-Control": IMMUTABLE})


def setup(app: web.Application, cache: ImageCache) -> None:
    app[CACHE_KEY] = cache
    app.router.add_get("/api/images/cache/{name}", cached_image)
