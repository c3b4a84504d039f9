"""Operations routes: health, metrics, the API documents, and the admin API.

Admin routes need ``Authorization: Bearer <server.admin_token>``: 401 without credentials,
403 with wrong ones. With no token configured the admin API is disabled: 403 to every call, with
credentials or without (no credentials could open it).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from importlib import resources

import orjson
from aiohttp import web

from rune.errors import RuneError
from rune.http.errors import HttpError
from rune.http.runtime import RUNTIME, Runtime
from rune.ops.metrics import CONTENT_TYPE

__all__ = ["routes"]

routes = web.RouteTableDef()
SPEC = resources.files("rune.http") / "spec"
LAG_TIMEOUT_S = 2.0


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    """The process and its event loop answer (``pid`` tells workers apart)."""
    return _json({"status": "alive", "pid": os.getpid()})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    """Caught up with the fact and policy topics, a bundle active, not shutting down."""
    rt = request.app[RUNTIME]
    ctx = rt.ctx
    az = ctx.authorizer
    body = {"policy_version": az.policy_version, "watermark": az.watermark}
    if rt.draining or ctx.stopping.is_set():
        return _json({"status": "stopping", **body}, 503)
    if not ctx.ready.is_set():
        return _json({"status": "catching_up", **body}, 503)
    if az.policy_version is None:
        return _json({"status": "no_bundle", **body}, 503)
    if not ctx.log.available():
        return _json({"status": "log_unavailable", **body}, 503)
    return _json({"status": "ready", **body})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    # lag needs the log's end offsets; a slow or absent broker must not fail the scrape (the
    # previous lag figures stay)
    with contextlib.suppress(TimeoutError, OSError, RuneError):
        await asyncio.wait_for(rt.service.refresh_lag(), LAG_TIMEOUT_S)
    return web.Response(body=rt.ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


@routes.get("/openapi.yaml")
async def openapi(request: web.Request) -> web.Response:
    text = (SPEC / "openapi.yaml").read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/yaml")


@routes.get("/asyncapi.yaml")
async def asyncapi(request: web.Request) -> web.Response:
    text = (SPEC / "asyncapi.yaml").read_text(encoding="utf-8")
    return web.Response(text=text, content_type="application/yaml")


def _admin(request: web.Request) -> Runtime:
    rt = request.app[RUNTIME]
    expected = rt.settings.server.admin_token.get_secret_value()
    if not expected:
        raise HttpError(403, "forbidden", "the admin API is disabled (server.admin_token unset)")
    header = request.headers.get("Authorization", "")
    if not header:
        raise HttpError(
            401,
            "unauthorized",
            "admin routes need 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="rune-admin"'},
        )
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HttpError(403, "forbidden", "invalid admin token")
    return rt


@routes.post("/admin/cache/clear")
async def cache_clear(request: web.Request) -> web.Response:
    rt = _admin(request)
    return _json({"cleared": rt.ctx.authorizer.clear_cache()})


@routes.post("/admin/reload")
async def reload(request: web.Request) -> web.Response:
    rt = _admin(request)
    report = rt.reload()
    return _json(report.to_json(), 200 if report.error is None else 400)


@routes.get("/admin/stats")
async def stats(request: web.Request) -> web.Response:
    rt = _admin(request)
    ctx = rt.ctx
    s = ctx.stats
    body = {
        "ready": ctx.ready.is_set(),
        "authorizer": ctx.authorizer.stats(),
        "relations": {
            name: {"kind": info.kind, "arity": info.arity, "rows": info.size}
            for name, info in sorted(ctx.authorizer.engine.relations().items())
        },
        "service": {name: getattr(s, name) for name in s.__slots__},
        "watermark": ctx.authorizer.watermark,
    }
    return _json(body)


@routes.get("/admin/config")
async def config(request: web.Request) -> web.Response:
    """The effective settings, secrets masked (``X-Rune-Pid`` names the answering process)."""
    rt = _admin(request)
    response = _json(rt.settings.model_dump(mode="json"))
    response.headers["X-Rune-Pid"] = str(os.getpid())
    return response
