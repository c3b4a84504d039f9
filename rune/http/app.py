"""The aiohttp application: routes (``api``, ``ops``) behind three middlewares, outermost
first: metrics (count and time every request by route), errors (every failure becomes the
JSON error body; nothing escapes as a crash), rate limit (per client, 429)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from rune.connectors.base import ConnectorError
from rune.http import api, ops, zanzibar
from rune.http.errors import HttpError, error_response
from rune.http.runtime import RUNTIME, Runtime

__all__ = ["create_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
EXEMPT = ("/health/", "/metrics")
"""Never rate limited: probes and scrapes must see the service even when it is flooded."""
HARD_MAX_BODY = 64 * 1024 * 1024
"""aiohttp's own cap; ``server.max_body_bytes`` (reloadable) is checked below it."""

_log = structlog.get_logger("rune.http")


def _route(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    m = request.app[RUNTIME].ctx.metrics
    start = time.perf_counter()
    with m.http_in_flight.track_inprogress():
        response = await handler(request)
    route = _route(request)
    m.http_requests.labels(route, str(response.status)).inc()
    m.http_latency.labels(route).observe(time.perf_counter() - start)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HttpError as exc:
        return error_response(exc.status, exc.type, exc.message, exc.location, exc.headers)
    except ConnectorError as exc:  # the log (Kafka) refused or timed out: retry later
        _log.warning("log unavailable", path=request.path, error=str(exc))
        return error_response(
            503,
            "log_unavailable",
            f"the log did not acknowledge: {exc}",
            "",
            {"Retry-After": "1"},
        )
    except web.HTTPException as exc:  # aiohttp's own: 404, 405, 413 ...
        kind = exc.reason.lower().replace(" ", "_")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"{request.method} is not allowed on {request.path}; use {allowed}"
        elif isinstance(exc, web.HTTPNotFound):
            message = f"no route {request.path} (see /openapi.yaml)"
        else:
            message = exc.reason
        return error_response(exc.status, kind, message, headers=headers)
    except Exception:
        _log.exception("http handler failed", path=request.path, method=request.method)
        return error_response(500, "internal", "internal error; the service keeps running")


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(EXEMPT):
        rt = request.app[RUNTIME]
        wait = rt.limiter.take(request.remote or "unknown")
        if wait:
            rt.ctx.metrics.rate_limited.inc()
            raise HttpError(
                429,
                "rate_limited",
                f"rate limit of {rt.limiter.rate:g} requests/s exceeded",
                headers={"Retry-After": rt.limiter.retry_after(wait)},
            )
    return await handler(request)


def create_app(runtime: Runtime) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, error_middleware, rate_limit_middleware],
        client_max_size=HARD_MAX_BODY,
    )
    app[RUNTIME] = runtime
    app.add_routes(api.routes)
    app.add_routes(ops.routes)
    app.add_routes(zanzibar.routes)  # /v1/check, /v1/zanzibar/lookup/* (rune.models)
    return app
