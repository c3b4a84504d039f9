"""Zanzibar routes: checks and lookups in SpiceDB / OpenFGA terms (:mod:`rune.models`).

- ``POST /v1/check``: ``{"resource": "document:1", "permission": "view", "subject":
  "user:anne", "consistency"?, "explain"?, "id"?}`` (or a list) -> contract-v1 decisions,
  audited and published like those of ``/v1/authorize``;
- ``GET /v1/zanzibar/lookup/resources?resource_type=&permission=&subject=&cursor=&limit=``
  (LookupResources / ListObjects) and ``GET /v1/zanzibar/lookup/subjects?resource=&permission=
  &subject_type=&subject_relation=&cursor=&limit=`` (LookupSubjects / ListUsers), with an
  optional ``consistency`` parameter (the JSON token) waited for like a request's.

Relationships are written through ``POST /v1/events`` (relationship events).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from rune.http.common import (
    decide_and_publish,
    json_response,
    limit_param,
    locate,
    query_param,
    read_items,
    runtime,
)
from rune.http.errors import HttpError
from rune.models.check import ZanzibarView
from rune.models.errors import ModelError
from rune.models.requests import validate_check
from rune.streams.consistency import Token, TokenError, parse_token, wait_for_token

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/v1/check")
async def check(request: web.Request) -> web.Response:
    rt = runtime(request)
    ctx, s = rt.ctx, rt.settings
    items, single = await read_items(request, rt, "checks")
    if ctx.authorizer.policy_version is None:
        raise HttpError(
            503, "no_bundle", "no policy bundle (model) is active", headers={"Retry-After": "1"}
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
        bad = validate_check({**req, "permission": req.get("permission")}, s.server.max_id_chars)
        if bad is not None:
            field, _, message = bad.partition(": ")
            raise HttpError(422, "invalid_request", message, locate(single, i, field))
        checked.append(req)
    return await decide_and_publish(rt, checked, tokens, single)


async def _consistent(request: web.Request) -> ZanzibarView:
    rt = runtime(request)
    ctx, s = rt.ctx, rt.settings
    raw = request.query.get("consistency")
    if raw:
        try:
            parsed = orjson.loads(raw)
            token = parse_token(
                {"consistency": parsed}, frozenset({s.topics.facts, s.topics.policies})
            )
        except (orjson.JSONDecodeError, TokenError) as exc:
            raise HttpError(422, "invalid_request", f"consistency: {exc}", "consistency") from None
        if token and not await wait_for_token(ctx, token, s.stream.token_wait_s):
            raise HttpError(
                409,
                "stale_view",
                f"token {token} not applied in {s.stream.token_wait_s}s",
                "consistency",
                {"Retry-After": "1"},
            )
    return ZanzibarView(ctx.authorizer.engine)


def _watermarked(request: web.Request, page: dict[str, Any]) -> web.Response:
    az = runtime(request).ctx.authorizer
    return json_response({**page, "policy_version": az.policy_version, "watermark": az.watermark})


@routes.get("/v1/zanzibar/lookup/resources")
async def lookup_resources(request: web.Request) -> web.Response:
    view = await _consistent(request)
    try:
        page = view.lookup_resources(
            query_param(request, "resource_type"),
            query_param(request, "permission"),
            query_param(request, "subject"),
            request.query.get("cursor"),
            limit_param(request),
        )
    except ModelError as exc:
        raise HttpError(422, "invalid_request", exc.message) from None
    return _watermarked(request, page.to_json())


@routes.get("/v1/zanzibar/lookup/subjects")
async def lookup_subjects(request: web.Request) -> web.Response:
    view = await _consistent(request)
    try:
        page = view.lookup_subjects(
            query_param(request, "resource"),
            query_param(request, "permission"),
            query_param(request, "subject_type"),
            request.query.get("subject_relation", ""),
            request.query.get("cursor"),
            limit_param(request),
        )
    except ModelError as exc:
        raise HttpError(422, "invalid_request", exc.message) from None
    return _watermarked(request, page.to_json())
