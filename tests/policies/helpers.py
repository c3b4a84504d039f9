"""Small builders shared by the decision-layer tests."""

from __future__ import annotations

from typing import Any


def uid(etype: str, eid: str) -> dict[str, str]:
    return {"type": etype, "id": eid}


def user(eid: str) -> dict[str, str]:
    return uid("User", eid)


def group(eid: str) -> dict[str, str]:
    return uid("Group", eid)


def doc(eid: str) -> dict[str, str]:
    return uid("Doc", eid)


def action(eid: str) -> dict[str, str]:
    return uid("Action", eid)


def fact(op: str, relation: str, *args: Any) -> dict[str, Any]:
    return {"op": op, "fact": [relation, *args]}


def upsert(
    u: dict[str, str],
    attrs: dict[str, Any] | None = None,
    parents: list[Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    entity: dict[str, Any] = {"uid": u, "attrs": attrs or {}, "parents": parents or []}
    entity.update(extra)
    return {"op": "upsert", "entity": entity}


def delete(u: dict[str, str]) -> dict[str, Any]:
    return {"op": "delete", "entity": {"uid": u}}


def req(
    p: dict[str, str], a: str | dict[str, str], r: dict[str, str], rid: str = "r-1", **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rid,
        "principal": p,
        "action": action(a) if isinstance(a, str) else a,
        "resource": r,
        "context": {},
    }
    out.update(extra)
    return out
