"""What the API routes share: reading bodies and query parameters, locating errors in lists,
the runtime once ready, JSON answers, merging consistency tokens, bounded writes to the log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from rune.http.errors import HttpError
from rune.http.limits import read_json
from rune.http.runtime import RUNTIME, Runtime
from rune.streams.consistency import Token, wait_for_token

__all__ = [
    "acknowledged",
    "decide_and_publish",
    "json_response",
    "limit_param",
    "locate",
    "merge_tokens",
    "query_param",
    "read_items",
    "runtime",
]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")


def locate(single: bool, i: int, location: str) -> str:
    """``location`` inside item ``i`` of a list body (``[i].location``); as is for one object."""
    prefix = "" if single else f"[{i}]"
    if not location:
        return prefix
    return f"{prefix}.{location}" if prefix else location


def runtime(request: web.Request) -> Runtime:
    """The runtime, once the service has caught up (503 before: views are incomplete)."""
    rt = request.app[RUNTIME]
    if not rt.ctx.ready.is_set():
        raise HttpError(
            503,
            "not_ready",
            "catching up with the fact and policy topics; retry shortly",
            headers={"Retry-After": "1"},
        )
    return rt


async def read_items(request: web.Request, rt: Runtime, what: str) -> tuple[list[Any], bool]:
    """The body as a list of objects and whether it was a single object."""
    s = rt.settings.server
    body = await read_json(request, s.max_body_bytes)
    single = not isinstance(body, list)
    items = [body] if single else body
    if not items:
        raise HttpError(422, "invalid_request", f"an empty list holds no {what}")
    if len(items) > s.max_batch:
        raise HttpError(
            413, "batch_too_large", f"{len(items)} {what} in one call; the limit is {s.max_batch}"
        )
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise HttpError(
                422,
                "invalid_request",
                f"each of the {what} is a JSON object",
                locate(single, i, ""),
            )
    return items, single


T = TypeVar("T")


async def acknowledged(rt: Runtime, write: Callable[[], Awaitable[T]]) -> T:
    """Run ``write`` (a write to the log) and wait for it at most ``server.log_wait_s``.

    503 ``log_unavailable`` with ``Retry-After`` when the log is known to be unreachable
    (nothing is written) or the wait runs out. Pitfall: after a timeout the write goes on in
    the background and completes once the log is back, so a client that retries may write
    twice: events and bundles are idempotent by key, and decision records carry the request
    id for readers to deduplicate.
    """
    if not rt.ctx.log.available():
        raise HttpError(
            503,
            "log_unavailable",
            "the log (Kafka) is unreachable; nothing was written",
            headers={"Retry-After": "1"},
        )
    task = asyncio.ensure_future(write())
    wait_s = rt.settings.server.log_wait_s
    try:
        return await asyncio.wait_for(asyncio.shield(task), wait_s)
    except TimeoutError:
        rt.background.add(task)
        task.add_done_callback(_finished)
        task.add_done_callback(rt.background.discard)
        raise HttpError(
            503,
            "log_unavailable",
            f"the log did not acknowledge within {wait_s}s; the write completes once it is back",
            headers={"Retry-After": "1"},
        ) from None


def _finished(task: asyncio.Future[Any]) -> None:
    """Retrieve a background write's outcome (a failure is logged where it happened)."""
    if not task.cancelled():
        task.exception()


async def decide_and_publish(
    rt: Runtime, checked: list[dict[str, Any]], tokens: list[Token], single: bool
) -> web.Response:
    """Decide validated requests (refused as stale if their merged token is not applied within
    ``stream.token_wait_s``), publish the decisions to the decision topic, and answer them:
    one object for a ``single`` body, else a list. The one path of authorize and check."""
    ctx, s = rt.ctx, rt.settings
    az = ctx.authorizer
    if tokens:
        token = merge_tokens(tokens)
        if not await wait_for_token(ctx, token, s.stream.token_wait_s):
            stale = f"stale view: token {token} not applied in {s.stream.token_wait_s}s"
            ctx.stats.stale += len(checked)
            decisions = [az.refuse(req, stale) for req in checked]
        else:
            decisions = az.decide_batch(checked)
    else:
        decisions = az.decide_batch(checked)
    outbox = rt.service.outbox
    shaped = await acknowledged(rt, lambda: outbox.publish(checked, decisions, "http"))
    body = [d.to_json() for d in shaped]
    return json_response(body[0] if single else body)


def merge_tokens(tokens: list[Token]) -> Token:
    out: Token = {}
    for token in tokens:
        for topic, parts in token.items():
            mine = out.setdefault(topic, {})
            for p, off in parts.items():
                mine[p] = max(off, mine.get(p, -1))
    return out


def query_param(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise HttpError(422, "invalid_request", f"query parameter {name!r} is required", name)
    return value


def limit_param(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise HttpError(422, "invalid_request", "limit must be an integer from 1 to 1000", "limit")
    return int(raw)
