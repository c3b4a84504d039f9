"""Questions to ask of the "drive" workload, and a plain-Python reference of the answers.

:func:`check_queries` draws ``allow(User, Action, Doc)`` questions; :func:`reference`
computes the materialized relations of the program directly, and :func:`allow_oracle` answers
``allow`` from them (for checking the engine at small scales).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from rune.ivm.values import EntityRef
from rune.workloads.drive_facts import Row
from rune.workloads.drive_program import ACTIONS

__all__ = ["allow_oracle", "check_queries", "reference"]


def check_queries(
    facts: dict[str, list[Row]], n: int, seed: int
) -> list[tuple[EntityRef, EntityRef, EntityRef]]:
    """``n`` ``allow(User, Action, Doc)`` questions: half uniformly random (mostly denied),
    half aimed at a document under a granted folder for a member of the grantee (often
    allowed), interleaved."""
    rng = random.Random(f"drive-checks/{seed}")
    users = sorted({u for u, _ in facts["member"]}, key=lambda e: int(e.id[1:]))
    docs = [d for d, _ in facts["doc_folder"]]
    members_of: dict[object, list[object]] = {}
    for u, g in facts["member"]:
        members_of.setdefault(g, []).append(u)
    docs_in: dict[object, list[object]] = {}
    for d, f in facts["doc_folder"]:
        docs_in.setdefault(f, []).append(d)
    grants = [g for g in facts["grant"] if g[2] in docs_in]
    out: list[tuple[EntityRef, EntityRef, EntityRef]] = []
    for i in range(n):
        action = rng.choice(ACTIONS)
        if i % 2 == 0 or not grants:
            out.append((rng.choice(users), action, rng.choice(docs)))
            continue
        subject, _, f = rng.choice(grants)
        if isinstance(subject, EntityRef) and subject.type == "Group":
            pool = members_of.get(subject) or users
            subject = rng.choice(pool)
        out.append((subject, action, rng.choice(docs_in[f])))  # type: ignore[arg-type]
    return out


def _closure(edges: list[Row]) -> dict[object, set[object]]:
    """Node -> set of strict ancestors, for an acyclic child -> parent edge list."""
    parents: dict[object, list[object]] = {}
    for c, p in edges:
        parents.setdefault(c, []).append(p)
    memo: dict[object, set[object]] = {}

    def up(node: object) -> set[object]:
        got = memo.get(node)
        if got is None:
            got = set()
            for p in parents.get(node, ()):
                got.add(p)
                got |= up(p)
            memo[node] = got
        return got

    for node in list(parents):
        up(node)
    return memo


_ROLE_ACTIONS = {
    "viewer": {"read"},
    "editor": {"read", "write"},
    "owner": {"read", "write", "share", "delete"},
}


def reference(facts: dict[str, list[Row]]) -> dict[str, set[Row]]:
    """The materialized relations of :func:`drive_program`, computed directly in Python
    (for checking the engine at small scales; acyclic groups and folders assumed)."""
    gup = _closure(facts["subgroup"])
    fup = _closure(facts["folder_parent"])
    in_group = set()
    for u, g in facts["member"]:
        in_group.add((u, g))
        for a in gup.get(g, ()):
            in_group.add((u, a))
    ancestor = {(f, a) for f, ups in fup.items() for a in ups}
    down: dict[object, list[object]] = {}
    for f, a in ancestor:
        down.setdefault(a, []).append(f)
    folder_role = set()
    for s, r, f in facts["grant"]:
        folder_role.add((s, r, f))
        for d in down.get(f, ()):
            folder_role.add((s, r, d))
    implies = {"owner": ["owner", "editor", "viewer"], "editor": ["editor", "viewer"]}
    implies["viewer"] = ["viewer"]
    role_includes = {(r, s) for r, ss in implies.items() for s in ss}
    role_action = {(r, EntityRef("Action", a)) for r, acts in _ROLE_ACTIONS.items() for a in acts}
    return {
        "in_group": in_group,
        "ancestor": ancestor,
        "folder_role": folder_role,
        "role_includes": role_includes,
        "role_action": role_action,
    }


def allow_oracle(
    facts: dict[str, list[Row]],
    derived: dict[str, set[Row]],
) -> Callable[[object, EntityRef, object], bool]:
    """A function ``(user, action, doc) -> bool`` answering ``allow`` from reference data."""
    folder_of: dict[Any, Any] = dict(facts["doc_folder"])
    groups: dict[object, set[object]] = {}
    for u, g in derived["in_group"]:
        groups.setdefault(u, set()).add(g)
    roles: dict[tuple[object, object], set[str]] = {}
    for s, r, f in derived["folder_role"]:
        roles.setdefault((s, f), set()).add(r)

    def allow(u: object, action: EntityRef, d: object) -> bool:
        f = folder_of.get(d)
        if f is None:
            return False
        for subject in (u, *groups.get(u, ())):
            for r in roles.get((subject, f), ()):
                if action.id in _ROLE_ACTIONS[r]:
                    return True
        return False

    return allow
