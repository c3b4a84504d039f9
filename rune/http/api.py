"""The v1 API: authorize, events, bundles, reverse lookups.

Requests and decisions are contract v1 (docs/design.md §2). Decisions made here are audited
(metrics, log line) and published to the decision topic like those of the request topic,
acknowledged before the response is sent, so the decision log is complete.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from rune.connectors.base import Outgoing, Position
from rune.errors import RuneError
from rune.http.common import (
    acknowledged,
    decide_and_publish,
    json_response,
    limit_param,
    locate,
    query_param,
    read_items,
    runtime,
)
from rune.http.errors import HttpError
from rune.http.limits import read_json
from rune.http.runtime import Runtime
from rune.policies.errors import PolicyError, StaleBundleError
from rune.policies.requests import parse_request
from rune.streams.consistency import Token, TokenError, parse_token, wait_for_token
from rune.streams.keys import event_key

__all__ = ["routes"]

routes = web.RouteTableDef()


def _token_of(positions: list[Position]) -> Token:
    token: Token = {}
    for pos in positions:
        parts = token.setdefault(pos.topic, {})
        key = str(pos.partition)
        parts[key] = max(pos.offset, parts.get(key, -1))
    return token


@routes.post("/v1/authorize")
async def authorize(request: web.Request) -> web.Response:
    rt = runtime(request)
    ctx = rt.ctx
    s = rt.settings
    items, single = await read_items(request, rt, "requests")
    if ctx.authorizer.policy_version is None:
        raise HttpError(
            503,
            "no_bundle",
            "no policy bundle is active: every decision would be a deny; post one to /v1/bundles",
            headers={"Retry-After": "1"},
        )
    ingested = frozenset({s.topics.facts, s.topics.policies})
    tokens: list[Token] = []
    checked: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if "id" not in item:
            item = {**item, "id": f"http-{uuid.uuid4().hex}"}
        try:
            token = parse_token(item, ingested)
        except TokenError as exc:
            where = locate(single, i, "consistency")
            raise HttpError(422, "invalid_request", str(exc), where) from None
        if token is not None:
            tokens.append(token)
        req = {k: v for k, v in item.items() if k != "consistency"}
        try:
            parse_request(req, s.server.max_id_chars, s.server.max_context_depth)
        except PolicyError as exc:
            where = locate(single, i, exc.location)
            raise HttpError(422, "invalid_request", exc.message, where) from None
        checked.append(req)
    return await decide_and_publish(rt, checked, tokens, single)


def _wait_param(request: web.Request, rt: Runtime) -> bool:
    raw = request.query.get("wait")
    if raw is None:
        return rt.settings.embedded  # embedded: "applied" means applied
    if raw.lower() in {"true", "1", "yes"}:
        return True
    if raw.lower() in {"false", "0", "no"}:
        return False
    raise HttpError(422, "invalid_request", f"wait must be true or false, got {raw!r}", "wait")


@routes.post("/v1/events")
async def events(request: web.Request) -> web.Response:
    rt = runtime(request)
    ctx = rt.ctx
    items, single = await read_items(request, rt, "events")
    wait = _wait_param(request, rt)
    try:
        ctx.authorizer.validate_events(items, "" if single else "events")
    except PolicyError as exc:
        location = exc.location.removeprefix("events") if not single else exc.location
        raise HttpError(422, "invalid_event", exc.message, location) from None
    topic = rt.settings.topics.facts
    out = []
    for i, item in enumerate(items):
        try:
            key = event_key(item)
        except RuneError as exc:
            raise HttpError(422, "invalid_event", str(exc), locate(single, i, "")) from None
        out.append(Outgoing(topic, key, orjson.dumps(item)))
    token = _token_of(await acknowledged(rt, lambda: ctx.log.produce(out)))
    body: dict[str, Any] = {"accepted": len(out), "consistency": {"at_least": token}}
    if wait:
        body["applied"] = await wait_for_token(ctx, token, rt.settings.stream.token_wait_s)
    return json_response(body, 200 if body.get("applied") else 202)


@routes.post("/v1/bundles")
async def bundles(request: web.Request) -> web.Response:
    rt = runtime(request)
    ctx = rt.ctx
    s = rt.settings
    bundle = await read_json(request, s.server.max_body_bytes)
    wait = _wait_param(request, rt)
    if not isinstance(bundle, dict):
        raise HttpError(400, "invalid_bundle", "a bundle is a JSON object")
    name = request.query.get("name", "default")
    if not name or len(name) > 256:
        raise HttpError(422, "invalid_request", "name must be 1 to 256 characters", "name")
    try:
        ctx.authorizer.validate_bundle(bundle)
    except StaleBundleError as exc:
        raise HttpError(409, "stale_bundle", exc.message, exc.location) from None
    except PolicyError as exc:
        raise HttpError(400, "invalid_bundle", exc.message, exc.location) from None
    rejected_before = ctx.stats.bundles_rejected
    record = Outgoing(s.topics.policies, name.encode(), orjson.dumps(bundle))
    positions = await acknowledged(rt, lambda: ctx.log.produce([record]))
    token = _token_of(positions)
    body: dict[str, Any] = {"version": bundle["version"], "consistency": {"at_least": token}}
    if not wait:
        return json_response(body, 202)
    applied = await wait_for_token(ctx, token, s.stream.token_wait_s)
    if applied and ctx.authorizer.policy_version != bundle["version"]:
        error = ctx.last_rejection if ctx.stats.bundles_rejected > rejected_before else None
        raise HttpError(
            400, "invalid_bundle", error or "bundle was not activated (a newer one is active)"
        )
    body["active"] = applied
    return json_response(body, 200 if applied else 202)


def _page(call: Any, free_type: str) -> web.Response:
    """Run a lookup; errors are located at their query parameter (``resource.type`` is
    ``resource_type``; the free type is ``free_type``)."""
    try:
        page = call()
    except PolicyError as exc:
        location = free_type if exc.location == "type" else exc.location.replace(".", "_")
        raise HttpError(422, "invalid_request", exc.message, location) from None
    return json_response(page.to_json())


@routes.get("/v1/lookup/resources")
async def lookup_resources(request: web.Request) -> web.Response:
    az = runtime(request).ctx.authorizer
    principal = {
        "type": query_param(request, "principal_type"),
        "id": query_param(request, "principal_id"),
    }
    action = {"type": query_param(request, "action_type"), "id": query_param(request, "action_id")}
    resource_type = query_param(request, "resource_type")
    limit, cursor = limit_param(request), request.query.get("cursor")
    return _page(
        lambda: az.lookup_resources(principal, action, resource_type, cursor, limit),
        "resource_type",
    )


@routes.get("/v1/lookup/subjects")
async def lookup_subjects(request: web.Request) -> web.Response:
    az = runtime(request).ctx.authorizer
    resource = {
        "type": query_param(request, "resource_type"),
        "id": query_param(request, "resource_id"),
    }
    action = {"type": query_param(request, "action_type"), "id": query_param(request, "action_id")}
    principal_type = query_param(request, "principal_type")
    limit, cursor = limit_param(request), request.query.get("cursor")
    return _page(
        lambda: az.lookup_subjects(resource, action, principal_type, cursor, limit),
        "principal_type",
    )
