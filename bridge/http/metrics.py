"""``GET /metrics``: the Prometheus text format, from :mod:`hal0_bridge.metrics`.

Served without the token, like status: it carries the same facts and no secrets (DESIGN §8).
"""

from __future__ import annotations

from aiohttp import web

from ..metrics import CONTENT_TYPE, Metrics
from .server import Access, route_policy

METRICS_KEY = web.AppKey("metrics", Metrics)


@route_policy(Access.OPEN)
async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS_KEY].render(), headers={"Content-Type": CONTENT_TYPE})


def setup(app: web.Application, registry: Metrics) -> None:
    app[METRICS_KEY] = registry
    app.router.add_get("/metrics", metrics)
