"""Record keys of the fact topic, so that a compacted topic holds exactly the current state.

- a fact ``[rel, a1, ..., an]`` has the key ``f:`` + canonical JSON of the list;
- an entity has the key ``e:`` + canonical JSON of its uid ``{"id": I, "type": T}``;
- a Zanzibar relationship (``{"op", "relationship": "document:1#viewer@user:anne"}`` or an
  OpenFGA tuple ``{"op", "user", "relation", "object"}``, see :mod:`rune.models.tuples`) has
  the key of the fact it is: ``f:["relationship","document","1","viewer","user","anne",""]``.

Canonical JSON (what orjson writes with sorted keys): UTF-8 with no ASCII escaping (``"é"``,
not ``"\u00e9"``; only ``"``, ``\\`` and control characters are escaped, as ``\"``,
``\\``, ``\n``, ``\u001f``...), no spaces, object keys sorted, entity references as
``{"id": I, "type": T}`` (Cedar's ``{"__entity": {...}}`` form is normalized). A tombstone
(null value) with a fact key retracts the fact; with an entity key it deletes the entity.

Ingest requires every record to carry the key of its event (:func:`keys_match` compares them
by meaning, so a producer whose JSON escapes differently is not refused); a record keyed
otherwise is dead-lettered, never applied. A retraction may be sent as a tombstone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from rune.models.errors import ModelError
from rune.models.tuples import fact_event, is_relationship_event
from rune.streams.errors import DecodeError

__all__ = ["event_key", "keys_match", "tombstone_event"]


def _norm(value: Any) -> Any:
    if isinstance(value, Mapping):
        inner = value.get("__entity") if len(value) == 1 else None
        uid = inner if isinstance(inner, Mapping) else value
        if set(uid) == {"type", "id"}:
            return {"id": uid["id"], "type": uid["type"]}
    return value


def _canon(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def event_key(event: Mapping[str, Any]) -> bytes:
    """The record key of a fact or entity event of contract v1, or of a relationship event
    (the key of its fact), (raise DecodeError)."""
    op = event.get("op")
    if op in ("assert", "retract") and "fact" not in event and is_relationship_event(event):
        try:
            event = fact_event(event)
        except ModelError as exc:
            raise DecodeError(str(exc)) from None
    if op in ("assert", "retract"):
        fact = event.get("fact")
        if not isinstance(fact, list) or not fact:
            raise DecodeError("fact must be a non-empty list")
        return b"f:" + _canon([_norm(v) for v in fact])
    if op in ("upsert", "delete"):
        entity = event.get("entity")
        uid = entity.get("uid") if isinstance(entity, Mapping) else None
        if not isinstance(uid, Mapping):
            raise DecodeError("entity.uid must be an object")
        return b"e:" + _canon(_norm(uid))
    raise DecodeError(f"unknown op {op!r}")


def tombstone_event(key: bytes | None) -> dict[str, Any]:
    """The event a tombstone with ``key`` stands for (raise DecodeError)."""
    if key is None:
        raise DecodeError("tombstone without a key")
    kind, body = key[:2], key[2:]
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"tombstone key is not JSON: {exc}") from None
    if kind == b"f:" and isinstance(parsed, list) and parsed:
        return {"op": "retract", "fact": parsed}
    if kind == b"e:" and isinstance(parsed, dict):
        return {"op": "delete", "entity": {"uid": parsed}}
    raise DecodeError("tombstone key is neither f:<fact> nor e:<uid>")


def keys_match(key: bytes, expected: bytes) -> bool:
    """Whether record key ``key`` names the same fact or entity as the canonical ``expected``
    (equal bytes, or the same JSON value once escapes and entity forms are normalized)."""
    if key == expected:
        return True
    if key[:2] != expected[:2]:
        return False
    try:
        mine = orjson.loads(key[2:])
    except orjson.JSONDecodeError:
        return False
    if isinstance(mine, list):
        mine = [_norm(v) for v in mine]
    elif isinstance(mine, dict):
        mine = _norm(mine)
    return _canon(mine) == expected[2:]
