"""Authorization requests of contract v1: validation and the cache key.

Limits: request ``id`` at most :data:`MAX_REQUEST_ID_CHARS` characters; entity types and ids at
most 1024; ``context`` an object nested at most :data:`MAX_CONTEXT_DEPTH` levels with at most
:data:`MAX_CONTEXT_NODES` JSON nodes. Unknown fields are errors.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import orjson

from rune.ivm.values import EntityRef
from rune.jsonbytes import dumps_kept
from rune.policies.cedarjson import check_value
from rune.policies.errors import RequestError
from rune.policies.uids import KNOWN_TYPES, MAX_ENTITY_ID_CHARS, kind, parse_uid

__all__ = [
    "MAX_CONTEXT_DEPTH",
    "MAX_CONTEXT_NODES",
    "MAX_REQUEST_ID_CHARS",
    "Request",
    "parse_request",
    "read_id",
]

MAX_REQUEST_ID_CHARS: Final = 256
MAX_CONTEXT_DEPTH: Final = 16
MAX_CONTEXT_NODES: Final = 10_000
_FIELDS: Final = frozenset(
    {"id", "principal", "action", "resource", "context", "consistency", "explain", "tenant", "ts"}
)

_MISSING: Final = object()

CacheKey = tuple[EntityRef, EntityRef, EntityRef, bytes]


class Request(NamedTuple):
    """A validated request (a named tuple: built once per request on the hot path)."""

    id: str
    principal: EntityRef
    action: EntityRef
    resource: EntityRef
    context: dict[str, object]
    explain: bool
    context_refs: frozenset[EntityRef]
    key: CacheKey
    """Everything the decision depends on besides the views: principal, action, resource and
    the context in canonical JSON (``id`` and ``explain`` are not part of it)."""


def read_id(raw: object, max_id_chars: int = MAX_REQUEST_ID_CHARS) -> str | None:
    """The request id if it can be read (a string within the size limit), else None."""
    if isinstance(raw, dict):
        rid = raw.get("id")
        if isinstance(rid, str) and len(rid) <= max_id_chars:
            return rid
    return None


def parse_request(
    raw: object,
    max_id_chars: int = MAX_REQUEST_ID_CHARS,
    max_context_depth: int = MAX_CONTEXT_DEPTH,
) -> Request:
    """Validate a request; raise :class:`RequestError` naming the bad field."""
    if type(raw) is dict:
        fast = _plain(raw, max_id_chars)
        if fast is not None:
            return fast
    return _checked(raw, max_id_chars, max_context_depth)


def _plain(raw: dict[str, object], max_id_chars: int) -> Request | None:
    """The common request, recognised with a few C-level checks: known fields only, a string
    id, three ``{"type", "id"}`` references of types seen before, no context, no explain, no
    token. ``None``: anything else (the full checks decide)."""
    if not raw.keys() <= _FIELDS or raw.get("context") or raw.get("explain", False) is not False:
        return None
    rid = raw.get("id")
    if type(rid) is not str or len(rid) > max_id_chars:
        return None
    p, a, r = _known(raw.get("principal")), _known(raw.get("action")), _known(raw.get("resource"))
    context = raw.get("context")
    if (
        p is None
        or a is None
        or r is None
        or raw.get("consistency") is not None
        or not (context is None or type(context) is dict)
    ):
        return None
    return Request(rid, p, a, r, {}, False, _NO_REFS, (p, a, r, b""))


def _known(obj: object) -> EntityRef | None:
    if type(obj) is dict and len(obj) == 2:
        etype, eid = obj.get("type"), obj.get("id")
        if (
            type(etype) is str
            and type(eid) is str
            and etype in KNOWN_TYPES
            and len(eid) <= MAX_ENTITY_ID_CHARS
        ):
            return EntityRef(etype, eid)
    return None


_NO_REFS: Final[frozenset[EntityRef]] = frozenset()


def _checked(raw: object, max_id_chars: int, max_context_depth: int) -> Request:
    if not isinstance(raw, dict):
        raise RequestError(f"a request is an object, got {kind(raw)}")
    for name in raw:
        if name not in _FIELDS:
            extra = sorted(k for k in raw if k not in _FIELDS)
            raise RequestError(f"unknown field {extra[0]!r}", extra[0])
    rid = raw.get("id")
    if not isinstance(rid, str):
        raise RequestError(f"'id' must be a string, got {kind(rid)}", "id")
    if len(rid) > max_id_chars:
        raise RequestError(f"'id' longer than {max_id_chars} characters", "id")
    parts = []
    for name in ("principal", "action", "resource"):
        obj = raw.get(name, _MISSING)
        if obj is _MISSING:
            raise RequestError(f"missing {name!r}", name)
        parts.append(parse_uid(obj, name, RequestError))
    context = raw.get("context")
    if (not context and context is not None and type(context) is dict) or context is None:
        context = {}
    if not isinstance(context, dict):
        raise RequestError(f"'context' must be an object, got {kind(context)}", "context")
    refs: set[EntityRef] = set()
    if context:
        check_value(
            context,
            "context",
            RequestError,
            refs,
            max_depth=max_context_depth,
            budget=MAX_CONTEXT_NODES,
        )
    explain = raw.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError(f"'explain' must be a boolean, got {kind(explain)}", "explain")
    consistency = raw.get("consistency")
    if consistency is not None and not isinstance(consistency, dict):
        raise RequestError(
            f"'consistency' must be an object, got {kind(consistency)}", "consistency"
        )
    canon = dumps_kept(context, orjson.OPT_SORT_KEYS) if context else b""
    p, a, r = parts
    return Request(rid, p, a, r, context, explain, frozenset(refs), (p, a, r, canon))
