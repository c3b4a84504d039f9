"""Entity references and scalar values in contract-v1 JSON, converted to engine values.

An entity reference is ``{"type": T, "id": I}`` or Cedar's ``{"__entity": {"type": T, "id": I}}``.
Types follow Cedar's grammar (``App::User``); ids are any string, empty included.
"""

from __future__ import annotations

import re
from typing import Final

from rune.ivm.values import EntityRef, Value
from rune.policies.errors import PolicyError

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "KNOWN_TYPES",
    "MAX_ENTITY_ID_CHARS",
    "is_entity_json",
    "parse_scalar",
    "parse_uid",
    "uid_json",
]

MAX_ENTITY_ID_CHARS: Final = 1024
"""Longest entity type or id accepted in events and requests."""

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

_TYPE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*\Z")


def is_entity_type(name: object) -> bool:
    """``name`` is a valid (possibly namespaced) entity type such as ``App::User``."""
    return isinstance(name, str) and bool(_TYPE_RE.match(name))


def is_entity_json(obj: object) -> bool:
    """True for ``{"__entity": {...}}`` (the unambiguous entity form inside attributes)."""
    return isinstance(obj, dict) and len(obj) == 1 and "__entity" in obj


KNOWN_TYPES: dict[str, bool] = {}
"""Entity types already validated (a fast path for the common case), bounded."""


def parse_uid(obj: object, where: str, error: type[PolicyError]) -> EntityRef:
    """Parse an entity reference (either JSON form) or raise ``error`` at ``where``."""
    if type(obj) is dict and len(obj) == 2:
        etype = obj.get("type")
        eid = obj.get("id")
        if (
            type(etype) is str
            and type(eid) is str
            and etype in KNOWN_TYPES
            and len(eid) <= MAX_ENTITY_ID_CHARS
        ):
            return EntityRef(etype, eid)
    return _parse_uid(obj, where, error)


def _parse_uid(obj: object, where: str, error: type[PolicyError]) -> EntityRef:
    if isinstance(obj, dict) and "__entity" in obj:
        if len(obj) != 1:
            raise error("an __entity reference has no other keys", where)
        obj = obj["__entity"]
        where = f"{where}.__entity"
    if not isinstance(obj, dict):
        raise error(f"expected an entity reference {{'type', 'id'}}, got {_kind(obj)}", where)
    extra = set(obj) - {"type", "id"}
    if extra:
        raise error(f"unknown field {sorted(extra)[0]!r} in entity reference", where)
    etype = obj.get("type")
    eid = obj.get("id")
    if not isinstance(etype, str):
        raise error(f"entity type must be a string, got {_kind(etype)}", f"{where}.type")
    if not isinstance(eid, str):
        raise error(f"entity id must be a string, got {_kind(eid)}", f"{where}.id")
    if len(etype) > MAX_ENTITY_ID_CHARS or len(eid) > MAX_ENTITY_ID_CHARS:
        raise error(f"entity type or id longer than {MAX_ENTITY_ID_CHARS} characters", where)
    if not _TYPE_RE.match(etype):
        raise error(f"invalid entity type {etype!r}", f"{where}.type")
    if len(KNOWN_TYPES) < 10_000:
        KNOWN_TYPES[etype] = True
    return EntityRef(etype, eid)


def parse_scalar(obj: object, where: str, error: type[PolicyError]) -> Value:
    """A fact argument: string, 64-bit integer, boolean or entity reference."""
    if isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        if not INT_MIN <= obj <= INT_MAX:
            raise error(f"integer {obj} is outside the 64-bit range", where)
        return obj
    if isinstance(obj, dict):
        return parse_uid(obj, where, error)
    raise error(f"expected a string, integer, boolean or entity reference, got {_kind(obj)}", where)


def uid_json(ref: EntityRef) -> dict[str, str]:
    return {"type": ref.type, "id": ref.id}


def _kind(obj: object) -> str:
    if obj is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(obj), type(obj).__name__)


def kind(obj: object) -> str:
    """JSON kind name of a Python value, for error messages."""
    return _kind(obj)
