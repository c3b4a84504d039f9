"""Validation of Cedar JSON values (entity attributes, tags, request context).

A Cedar JSON value is a boolean, a 64-bit integer, a string, an array (a set), an object (a
record), ``{"__entity": {"type", "id"}}`` or ``{"__extn": {"fn": F, "arg": A}}`` (also
``"args": [...]``). Floats and ``null`` are not Cedar values. Errors name the path
(``entity.attrs.owner.__entity.id``).
"""

from __future__ import annotations

from typing import Final

from rune.ivm.values import EntityRef
from rune.policies.errors import PolicyError
from rune.policies.uids import INT_MAX, INT_MIN, kind, parse_uid

__all__ = ["MAX_DEPTH", "MAX_NODES", "check_value", "collect_refs"]

MAX_DEPTH: Final = 32
"""Deepest nesting of sets and records accepted in attributes, tags and context."""

MAX_NODES: Final = 100_000
"""Most JSON nodes accepted in one value tree (one entity's attributes, one context)."""


class _Budget:
    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left


def check_value(
    obj: object,
    where: str,
    error: type[PolicyError],
    refs: set[EntityRef],
    *,
    max_depth: int = MAX_DEPTH,
    budget: int = MAX_NODES,
) -> None:
    """Raise ``error`` at the offending path unless ``obj`` is a Cedar JSON value.

    Entity references met on the way (both ``__entity`` and bare ``{"type","id"}`` records,
    which Cedar reads as references when a schema says so) are added to ``refs``.
    """
    _check(obj, where, error, refs, 0, max_depth, _Budget(budget))


def _check(
    obj: object,
    where: str,
    error: type[PolicyError],
    refs: set[EntityRef],
    depth: int,
    max_depth: int,
    budget: _Budget,
) -> None:
    budget.left -= 1
    if budget.left < 0:
        raise error("value has too many elements", where)
    if isinstance(obj, bool | str):
        return
    if isinstance(obj, int):
        if not INT_MIN <= obj <= INT_MAX:
            raise error(f"integer {obj} is outside Cedar's 64-bit Long range", where)
        return
    if depth >= max_depth:
        raise error(f"value nested deeper than {max_depth} levels", where)
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            _check(item, f"{where}[{i}]", error, refs, depth + 1, max_depth, budget)
        return
    if isinstance(obj, dict):
        if "__entity" in obj:
            refs.add(parse_uid(obj, where, error))
            return
        if "__extn" in obj:
            _check_extn(obj, where, error)
            return
        if set(obj) == {"type", "id"} and all(isinstance(v, str) for v in obj.values()):
            refs.add(EntityRef(obj["type"], obj["id"]))
        for key, item in obj.items():
            if not isinstance(key, str):
                raise error("record keys must be strings", where)
            _check(item, f"{where}.{key}", error, refs, depth + 1, max_depth, budget)
        return
    raise error(f"{kind(obj)} is not a Cedar value", where)


def _check_extn(obj: dict[str, object], where: str, error: type[PolicyError]) -> None:
    ext = obj["__extn"]
    where = f"{where}.__extn"
    if len(obj) != 1 or not isinstance(ext, dict):
        raise error("expected {'__extn': {'fn': ..., 'arg': ...}}", where)
    if not isinstance(ext.get("fn"), str):
        raise error("extension function name 'fn' must be a string", f"{where}.fn")
    extra = set(ext) - {"fn", "arg", "args"}
    if extra:
        raise error(f"unknown field {sorted(extra)[0]!r} in extension value", where)
    if "arg" not in ext and "args" not in ext:
        raise error("extension value needs 'arg' or 'args'", where)
    if "arg" in ext and not isinstance(ext["arg"], str):
        raise error("extension argument 'arg' must be a string", f"{where}.arg")
    if "args" in ext and not isinstance(ext["args"], list):
        raise error("extension arguments 'args' must be an array", f"{where}.args")


def collect_refs(obj: object, out: set[EntityRef]) -> None:
    """Entity references inside an already checked value."""
    if isinstance(obj, list):
        for item in obj:
            collect_refs(item, out)
    elif isinstance(obj, dict):
        inner = obj.get("__entity")
        if isinstance(inner, dict):
            out.add(EntityRef(inner["type"], inner["id"]))
        elif "__extn" not in obj:
            if set(obj) == {"type", "id"} and all(isinstance(v, str) for v in obj.values()):
                out.add(EntityRef(obj["type"], obj["id"]))
            for item in obj.values():
                collect_refs(item, out)
