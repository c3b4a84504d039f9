"""The "drive" workload as contract-v1 JSON for ``rune.Authorizer`` (``rune benchmark``,
``perf/bench_authorizer.py``): :func:`bundle` (the program, optionally with the Cedar policies
:data:`CEDAR`), :func:`fact_events`, :func:`entity_events` (the same graph as Cedar entities)
and :func:`check_requests`.
"""

from __future__ import annotations

import random
from typing import Any

from rune.ivm.values import EntityRef
from rune.workloads.drive_checks import check_queries
from rune.workloads.drive_facts import Row
from rune.workloads.drive_program import drive_program

__all__ = ["CEDAR", "bundle", "check_requests", "entity_events", "fact_events"]

CEDAR = """\
@id("owner-all") permit(principal, action, resource)
  when { resource has owner && resource.owner == principal };
@id("admins-read") permit(principal in Group::"g0", action == Action::"read", resource);
@id("locked") forbid(principal, action == Action::"write", resource)
  when { resource has locked && resource.locked };
"""
"""Cedar policies for the hybrid setup: a document's owner may do anything, members of group
``g0`` may read everything, nobody may write a locked document."""


def _ref(v: object) -> object:
    return {"type": v.type, "id": v.id} if isinstance(v, EntityRef) else v


def bundle(version: int = 1, cedar: bool = True) -> dict[str, Any]:
    """A policy bundle: :func:`drive_program`, plus :data:`CEDAR` when ``cedar``."""
    return {"version": version, "datalog": drive_program(), "cedar": CEDAR if cedar else ""}


def fact_events(facts: dict[str, list[Row]]) -> list[dict[str, Any]]:
    """One ``assert`` event per base fact."""
    return [
        {"op": "assert", "fact": [rel, *(_ref(v) for v in row)]}
        for rel, rows in facts.items()
        for row in rows
    ]


def entity_events(facts: dict[str, list[Row]], seed: int) -> list[dict[str, Any]]:
    """The same graph as Cedar entities, one ``upsert`` each: users in groups, nested groups,
    documents in nested folders; every document has an ``owner`` (a random user) and is
    ``locked`` with probability 0.2."""
    rng = random.Random(seed)
    parents: dict[EntityRef, list[EntityRef]] = {}
    for rel in ("member", "subgroup", "folder_parent", "doc_folder"):
        for child, parent in facts[rel]:
            parents.setdefault(child, []).append(parent)
    users = sorted({u for u, _ in facts["member"]})
    events: list[dict[str, Any]] = []
    for ent, ps in parents.items():
        attrs: dict[str, Any] = {}
        if ent.type == "Doc":
            attrs = {"owner": {"__entity": _ref(rng.choice(users))}, "locked": rng.random() < 0.2}
        events.append(
            {
                "op": "upsert",
                "entity": {"uid": _ref(ent), "attrs": attrs, "parents": [_ref(p) for p in ps]},
            }
        )
    return events


def check_requests(facts: dict[str, list[Row]], n: int, seed: int) -> list[dict[str, Any]]:
    """:func:`check_queries` as contract-v1 requests with ids ``r0``, ``r1``, ..."""
    return [
        {"id": f"r{i}", "principal": _ref(p), "action": _ref(a), "resource": _ref(r), "context": {}}
        for i, (p, a, r) in enumerate(check_queries(facts, n, seed))
    ]
