"""The HTTP server: health and metrics now; webhooks and chat platforms attach here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rounds import __version__

from . import metrics
from .dispatcher import pending_count

log = logging.getLogger(__name__)
APP_KEY = web.AppKey("rounds", object)


async def healthz(request: web.Request) -> web.Response:
    app = request.app[APP_KEY]
    now = app.env.now()
    try:
        pending, oldest = await asyncio.to_thread(pending_count, app.db)
    except Exception as exc:
        log.warning("health check: database unavailable: %s", type(exc).__name__)
        return web.json_response(
            {"status": "error", "database": "unavailable", "version": __version__}, status=503
        )
    body = {
        "status": "ok",
        "database": "ok",
        "version": __version__,
        "transports": list(app.env.routes.platforms),
        "outbox": {
            "pending": pending,
            "oldest_seconds": round((now - oldest).total_seconds(), 1) if oldest else 0,
        },
    }
    for name, transport in app.transports.items():
        body[name] = await transport.health()
        if body[name].get("status") != "ok":
            body["status"] = "degraded"
    return web.json_response(body)


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


Route = tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]


def make_web_app(app: object, routes: list[Route] | None = None) -> web.Application:
    web_app = web.Application(client_max_size=1024 * 1024)
    web_app[APP_KEY] = app
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/metrics", metrics_endpoint)
    for method, path, handler in routes or []:
        web_app.router.add_route(method, path, handler)
    return web_app


async def start_http(
    app: object, host: str, port: int, routes: list[Route] | None = None
) -> web.AppRunner:
    runner = web.AppRunner(make_web_app(app, routes), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("http listening host=%s port=%s", host, port)
    return runner
