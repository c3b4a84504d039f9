"""Reverse queries: which resources a principal may act on, which principals may act on a resource.

Datalog permissions are answered from the views: ``Engine.lookup("allow", ...)`` with the
known columns bound gives the candidates, each of which is then decided exactly like
``check`` (so ``deny``, Cedar forbids and Cedar permits all count). Cedar permissions cannot be
inverted: when the bundle has Cedar policies, every upserted entity of the requested type is a
candidate too, checked with Cedar in batches. That costs one Cedar evaluation per candidate
scanned, so it is bounded by ``max_candidates`` (an error beyond it).

Pages are in a stable order (entity id), at most :data:`MAX_PAGE` items; the cursor is opaque
(it encodes the last id returned) and a page scans only as many candidates as it needs.
"""

from __future__ import annotations

import base64
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from rune.ivm.values import EntityRef
from rune.jsonbytes import dumps_kept
from rune.policies.builtin_rules import ALLOW
from rune.policies.cedarjson import collect_refs
from rune.policies.decide import Outcome, State
from rune.policies.errors import RequestError
from rune.policies.requests import Request
from rune.policies.uids import uid_json

__all__ = ["MAX_CANDIDATES", "MAX_PAGE", "LookupQuery", "Page", "lookup"]

MAX_PAGE: Final = 1000
MAX_CANDIDATES: Final = 100_000
_CHUNK: Final = 256


@dataclass(frozen=True, slots=True)
class Page:
    items: list[EntityRef]
    cursor: str | None
    """Pass back to get the next page; None when this is the last page."""
    scanned: int
    """Candidates decided to produce this page (the work done)."""

    def to_json(self) -> dict[str, object]:
        return {"items": [uid_json(i) for i in self.items], "cursor": self.cursor}


def encode_cursor(last: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([1, last])).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise RequestError("malformed cursor", "cursor") from None
    if not (isinstance(raw, list) and len(raw) == 2 and raw[0] == 1 and isinstance(raw[1], str)):
        raise RequestError("malformed cursor", "cursor")
    return raw[1]


@dataclass(frozen=True, slots=True)
class LookupQuery:
    """A reverse query: the entities of ``free_type`` that may ``action`` with ``fixed``
    (``free_is_resource``: they are the resources, ``fixed`` the principal; else the
    reverse), one page of at most ``limit`` after ``cursor``."""

    fixed: EntityRef
    action: EntityRef
    free_type: str
    free_is_resource: bool
    context: dict[str, object]
    cursor: str | None = None
    limit: int = 100


def lookup(
    state: State,
    decide: Callable[[Sequence[Request]], list[Outcome]],
    query: LookupQuery,
    max_candidates: int = MAX_CANDIDATES,
) -> Page:
    """One page of ``query``'s answer (raise :class:`RequestError` naming the bad part)."""
    fixed, action, free_type = query.fixed, query.action, query.free_type
    free_is_resource, context = query.free_is_resource, query.context
    cursor, limit = query.cursor, query.limit
    if not 1 <= limit <= MAX_PAGE:
        raise RequestError(f"limit must be between 1 and {MAX_PAGE}", "limit")
    ids: set[str] = set()
    if state.has_allow:
        pattern = (fixed, action, None) if free_is_resource else (None, action, fixed)
        col = 2 if free_is_resource else 0
        for row in state.views.lookup(ALLOW, pattern):
            v = row[col]
            if isinstance(v, EntityRef) and v.type == free_type:
                ids.add(v.id)
    if state.bundle is not None and state.bundle.has_cedar:
        ids |= state.store.ids_of_type(free_type)
        if len(ids) > max_candidates:
            raise RequestError(
                f"{len(ids)} candidates of type {free_type!r} exceed the bound of "
                f"{max_candidates} for a Cedar-evaluated reverse query",
                "limit",
            )
    order = sorted(ids)
    start = bisect_right(order, decode_cursor(cursor)) if cursor is not None else 0
    items: list[EntityRef] = []
    scanned = 0
    pos = start
    while pos < len(order) and len(items) < limit:
        chunk = order[pos : pos + min(_CHUNK, max(limit - len(items), 16))]
        refs = [EntityRef(free_type, i) for i in chunk]
        reqs = [_request(fixed, action, r, context, free_is_resource) for r in refs]
        for ref, out in zip(refs, decide(reqs), strict=True):
            pos += 1
            scanned += 1
            if out.allowed:
                items.append(ref)
                if len(items) == limit:
                    break
    more = pos < len(order)
    next_cursor = encode_cursor(items[-1].id) if items and more else None
    return Page(items, next_cursor, scanned)


def _request(
    fixed: EntityRef,
    action: EntityRef,
    free: EntityRef,
    context: dict[str, object],
    free_is_resource: bool,
) -> Request:
    p, r = (fixed, free) if free_is_resource else (free, fixed)
    refs: set[EntityRef] = set()
    collect_refs(context, refs)
    canon = dumps_kept(context, orjson.OPT_SORT_KEYS) if context else b""
    return Request("lookup", p, action, r, context, False, frozenset(refs), (p, action, r, canon))
