"""The "drive" reference workload of docs/design.md §6, generated deterministically from a seed.

Scale 1.0 is the workload of record: 100k users, 10k groups nested up to depth 6, 50k folders
nested up to depth 8, 500k documents, 100k grants with roles owner ⊇ editor ⊇ viewer inherited
down the folder tree, about 1.2M base facts. Every count scales linearly with ``scale``; the
depth bounds do not.

Entities are :class:`~rune.ivm.values.EntityRef` values ``User::"u17"``, ``Group::"g3"``,
``Folder::"f42"``, ``Doc::"d9"``, ``Action::"read"``; roles are the strings ``"owner"``,
``"editor"``, ``"viewer"``.

Base relations (what :func:`generate` returns, one list of tuples per relation):

=====================================  ==========================================================
``member(User, Group)``                direct memberships, 1..10 per user (mean 5.5)
``subgroup(Group, Group)``             child group is nested in parent group (depth <= 6)
``folder_parent(Folder, Folder)``      a folder's parent folder (a forest, depth <= 8)
``doc_folder(Doc, Folder)``            the folder that holds a document (one per document)
``grant(Subject, Role, Folder)``       a User or Group holds Role on Folder and everything below
=====================================  ==========================================================

The program (:func:`drive_program`) also carries the role lattice as facts
(``role_implies``, ``role_perm``). Following Zanzibar's Leopard index it materializes the
closures (``in_group`` for nested groups, ``ancestor`` for folders, ``folder_role`` for
grants inherited down the tree) and declares the per-document ``allow`` on-demand: a check
``allow(User, Action, Doc)`` is a few indexed lookups, never a users x documents relation.

Structure: every group and folder has a *level* (1 = root). An edge always goes from level
``L`` to level ``L - 1``, so nesting depth is bounded by the number of levels and the graphs
are acyclic. The single-change workloads (:func:`changes`) keep that invariant (a moved folder
or an added group edge gets a new parent on the same level as before), so a long stream of
changes never grows the depth or creates a cycle.

As contract-v1 JSON for ``rune.Authorizer`` (``rune benchmark``, ``perf/bench_authorizer.py``):
:func:`bundle` (the program, optionally with the Cedar policies :data:`CEDAR`),
:func:`fact_events`, :func:`entity_events` (the same graph as Cedar entities) and
:func:`check_requests`. ``perf/drive.py`` re-exports this module for the benchmarks.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from rune.ivm.values import EntityRef

__all__ = [
    "ACTIONS",
    "BASE",
    "CEDAR",
    "KINDS",
    "ROLES",
    "Change",
    "Row",
    "allow_oracle",
    "bundle",
    "changes",
    "check_queries",
    "check_requests",
    "drive_program",
    "entity_events",
    "fact_events",
    "generate",
    "reference",
]

BASE = {
    "users": 100_000,
    "groups": 10_000,
    "folders": 50_000,
    "docs": 500_000,
    "grants": 100_000,
}
"""Entity counts at scale 1.0 (docs/design.md §6)."""

Row = tuple[Any, ...]
"""One fact: the arguments of a relation (``EntityRef`` values and role strings)."""

GROUP_LEVELS = (0.05, 0.10, 0.15, 0.20, 0.25, 0.25)
"""Share of groups on each nesting level 1..6."""

FOLDER_LEVELS = (0.02, 0.05, 0.10, 0.15, 0.20, 0.20, 0.15, 0.13)
"""Share of folders on each nesting level 1..8."""

MEMBERSHIPS_PER_USER = (1, 10)
"""Direct group memberships per user, uniform in this range (inclusive)."""

GROUP_GRANT_SHARE = 0.4
"""Share of grants whose subject is a group (the rest go to users)."""

ROLES = ("owner", "editor", "viewer")
ACTIONS = tuple(EntityRef("Action", a) for a in ("read", "write", "share", "delete"))

KINDS = (
    "member_add",
    "member_remove",
    "subgroup_remove",
    "subgroup_add",
    "folder_move",
    "grant_add",
    "grant_remove",
)
"""Kinds of single changes produced by :func:`changes`."""

_PROGRAM = """\
// "drive" reference workload (rune/workloads/drive.py), docs/design.md §6.
// Base relations: member(User, Group), subgroup(Group, ParentGroup),
// folder_parent(Folder, ParentFolder), doc_folder(Doc, Folder), grant(Subject, Role, Folder).

.on_demand allow.

// Role lattice: owner ⊇ editor ⊇ viewer; each role adds actions to those it implies.
role_implies("owner", "editor").
role_implies("editor", "viewer").
role_perm("viewer", Action::"read").
role_perm("editor", Action::"write").
role_perm("owner", Action::"share").
role_perm("owner", Action::"delete").

role_includes(R, R) :- role_perm(R, _).
role_includes(R, S) :- role_implies(R, S).
role_includes(R, T) :- role_includes(R, S), role_implies(S, T).
role_action(R, A) :- role_includes(R, S), role_perm(S, A).

// Group membership closure through nested groups (materialized, Leopard-style).
in_group(U, G) :- member(U, G).
in_group(U, G) :- in_group(U, H), subgroup(H, G).

// Folder ancestry (materialized).
ancestor(F, A) :- folder_parent(F, A).
ancestor(F, A) :- ancestor(F, P), folder_parent(P, A).

// Effective role of a subject on a folder: granted there or on any ancestor (materialized).
folder_role(S, R, F) :- grant(S, R, F).
folder_role(S, R, F) :- ancestor(F, A), grant(S, R, A).

// The per-document check, computed at lookup time through indexes.
allow(U, A, D) :- doc_folder(D, F), folder_role(U, R, F), role_action(R, A).
allow(U, A, D) :- doc_folder(D, F), in_group(U, G), folder_role(G, R, F), role_action(R, A).
"""


def drive_program() -> str:
    """Datalog source of the "drive" workload (dialect of docs/design.md §3)."""
    return _PROGRAM


def user(i: int) -> EntityRef:
    return EntityRef("User", f"u{i}")


def group(i: int) -> EntityRef:
    return EntityRef("Group", f"g{i}")


def folder(i: int) -> EntityRef:
    return EntityRef("Folder", f"f{i}")


def doc(i: int) -> EntityRef:
    return EntityRef("Doc", f"d{i}")


def _count(base: int, scale: float) -> int:
    return max(1, round(base * scale))


def _levels(n: int, shares: tuple[float, ...]) -> list[int]:
    """Level (1-based) of each of ``n`` nodes, nodes sorted by level, level 1 non-empty."""
    sizes = [max(1, round(n * s)) if i == 0 else round(n * s) for i, s in enumerate(shares)]
    sizes[-1] += n - sum(sizes)  # absorb rounding in the deepest level
    while sizes[-1] < 0:  # tiny n: take back from the deepest non-empty levels
        j = max(i for i in range(len(sizes) - 1) if sizes[i] > (1 if i == 0 else 0))
        sizes[j] -= 1
        sizes[-1] += 1
    out: list[int] = []
    for level, size in enumerate(sizes, start=1):
        out.extend([level] * size)
    return out


def _forest(rng: random.Random, levels: list[int]) -> list[int]:
    """Parent index of each node (-1 for roots); a node's parent is on the level above.

    A level with no nodes above it (possible only at tiny scales) makes its nodes roots.
    """
    by_level: dict[int, list[int]] = {}
    parents: list[int] = []
    for i, level in enumerate(levels):
        above = by_level.get(level - 1)
        parents.append(rng.choice(above) if above else -1)
        by_level.setdefault(level, []).append(i)
    return parents


@dataclass
class Shape:
    """Counts and the level structure needed to generate facts and change streams."""

    users: int
    groups: int
    folders: int
    docs: int
    grants: int
    group_level: list[int] = field(default_factory=list)
    folder_level: list[int] = field(default_factory=list)


def _shape(scale: float) -> Shape:
    if scale <= 0:
        raise ValueError("scale must be positive")
    return Shape(
        users=_count(BASE["users"], scale),
        groups=_count(BASE["groups"], scale),
        folders=_count(BASE["folders"], scale),
        docs=_count(BASE["docs"], scale),
        grants=_count(BASE["grants"], scale),
    )


def _generate(scale: float, seed: int) -> tuple[Shape, dict[str, list[Row]]]:
    rng = random.Random(f"drive/{seed}")
    shape = _shape(scale)
    shape.group_level = _levels(shape.groups, GROUP_LEVELS)
    shape.folder_level = _levels(shape.folders, FOLDER_LEVELS)

    gparent = _forest(rng, shape.group_level)
    subgroup = [(group(i), group(p)) for i, p in enumerate(gparent) if p >= 0]

    fparent = _forest(rng, shape.folder_level)
    folder_parent = [(folder(i), folder(p)) for i, p in enumerate(fparent) if p >= 0]

    lo, hi = MEMBERSHIPS_PER_USER
    hi = min(hi, shape.groups)
    lo = min(lo, hi)
    member: list[Row] = []
    for u in range(shape.users):
        k = rng.randint(lo, hi)
        for g in sorted(rng.sample(range(shape.groups), k)):
            member.append((user(u), group(g)))

    doc_folder = [(doc(d), folder(rng.randrange(shape.folders))) for d in range(shape.docs)]

    seen: set[Row] = set()
    grant: list[Row] = []
    while len(grant) < shape.grants:
        if rng.random() < GROUP_GRANT_SHARE:
            subject = group(rng.randrange(shape.groups))
        else:
            subject = user(rng.randrange(shape.users))
        fact = (subject, rng.choice(ROLES), folder(rng.randrange(shape.folders)))
        if fact not in seen:
            seen.add(fact)
            grant.append(fact)

    facts: dict[str, list[Row]] = {
        "member": member,
        "subgroup": subgroup,
        "folder_parent": folder_parent,
        "doc_folder": doc_folder,
        "grant": grant,
    }
    return shape, facts


def generate(scale: float = 1.0, seed: int = 1) -> dict[str, list[Row]]:
    """Base facts of the "drive" workload per relation. Same (scale, seed) → same facts."""
    return _generate(scale, seed)[1]


# ---------------------------------------------------------------------------------------------
# Single-change workloads


@dataclass(frozen=True)
class Change:
    """One batch for ``Engine.update``: ``kind`` is one of :data:`KINDS`."""

    kind: str
    insert: dict[str, list[Row]]
    delete: dict[str, list[Row]]


class _Bag:
    """A set with O(1) insert, remove and uniform random choice (deterministic order)."""

    __slots__ = ("index", "items")

    def __init__(self, items: list[Row] | None = None) -> None:
        self.items: list[Row] = []
        self.index: dict[Row, int] = {}
        for item in items or ():
            self.add(item)

    def __contains__(self, item: Row) -> bool:
        return item in self.index

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: Row) -> None:
        if item not in self.index:
            self.index[item] = len(self.items)
            self.items.append(item)

    def remove(self, item: Row) -> None:
        i = self.index.pop(item)
        last = self.items.pop()
        if i < len(self.items):
            self.items[i] = last
            self.index[last] = i

    def choice(self, rng: random.Random) -> Row:
        return self.items[rng.randrange(len(self.items))]


class _Mirror:
    """The current base facts, kept in step with the change stream."""

    def __init__(self, shape: Shape, facts: dict[str, list[Row]]) -> None:
        self.shape = shape
        self.rel = {name: _Bag(rows) for name, rows in facts.items()}
        self.groups_at: dict[int, list[EntityRef]] = {}
        for i, level in enumerate(shape.group_level):
            self.groups_at.setdefault(level, []).append(group(i))
        self.folders_at: dict[int, list[EntityRef]] = {}
        for i, level in enumerate(shape.folder_level):
            self.folders_at.setdefault(level, []).append(folder(i))
        self.group_level = {group(i): lv for i, lv in enumerate(shape.group_level)}
        self.folder_level = {folder(i): lv for i, lv in enumerate(shape.folder_level)}
        # folder -> current parent (a forest: moves keep exactly one parent)
        self.fparent = {f: p for f, p in self.rel["folder_parent"].items}

    def apply(self, change: Change) -> None:
        for name, rows in change.delete.items():
            for row in rows:
                self.rel[name].remove(row)
        for name, rows in change.insert.items():
            for row in rows:
                self.rel[name].add(row)
        for f, p in change.delete.get("folder_parent", ()):
            if self.fparent.get(f) == p:
                del self.fparent[f]
        for f, p in change.insert.get("folder_parent", ()):
            self.fparent[f] = p

    def facts(self) -> dict[str, list[Row]]:
        return {name: list(bag.items) for name, bag in self.rel.items()}


def _member_add(kind: str, m: _Mirror, rng: random.Random) -> Change | None:
    s = m.shape
    for _ in range(100):
        fact: Row = (user(rng.randrange(s.users)), group(rng.randrange(s.groups)))
        if fact not in m.rel["member"]:
            return Change(kind, {"member": [fact]}, {})
    return None


def _removal(relation: str) -> Callable[[str, _Mirror, random.Random], Change | None]:
    """A change that removes a present fact of ``relation`` chosen at random."""

    def make(kind: str, m: _Mirror, rng: random.Random) -> Change | None:
        if not m.rel[relation]:
            return None
        return Change(kind, {}, {relation: [m.rel[relation].choice(rng)]})

    return make


def _subgroup_add(kind: str, m: _Mirror, rng: random.Random) -> Change | None:
    # an extra parent on the level above the child (keeps depth <= 6, no cycles)
    for _ in range(100):
        child = group(rng.randrange(m.shape.groups))
        above = m.groups_at.get(m.group_level[child] - 1)
        if not above:
            continue
        fact = (child, rng.choice(above))
        if fact not in m.rel["subgroup"]:
            return Change(kind, {"subgroup": [fact]}, {})
    return None


def _folder_move(kind: str, m: _Mirror, rng: random.Random) -> Change | None:
    # a non-root folder gets a new parent on the same level as its current one
    for _ in range(100):
        f = folder(rng.randrange(m.shape.folders))
        old = m.fparent.get(f)
        if old is None:
            continue
        candidates = m.folders_at[m.folder_level[old]]
        if len(candidates) < 2:
            continue
        new = rng.choice(candidates)
        if new == old:
            continue
        return Change(kind, {"folder_parent": [(f, new)]}, {"folder_parent": [(f, old)]})
    return None


def _grant_add(kind: str, m: _Mirror, rng: random.Random) -> Change | None:
    s = m.shape
    for _ in range(100):
        if rng.random() < GROUP_GRANT_SHARE:
            subject = group(rng.randrange(s.groups))
        else:
            subject = user(rng.randrange(s.users))
        fact = (subject, rng.choice(ROLES), folder(rng.randrange(s.folders)))
        if fact not in m.rel["grant"]:
            return Change(kind, {"grant": [fact]}, {})
    return None


_MAKERS: Final[dict[str, Callable[[str, _Mirror, random.Random], Change | None]]] = {
    "member_add": _member_add,
    "member_remove": _removal("member"),
    "subgroup_remove": _removal("subgroup"),
    "subgroup_add": _subgroup_add,
    "folder_move": _folder_move,
    "grant_add": _grant_add,
    "grant_remove": _removal("grant"),
}


def _make(kind: str, m: _Mirror, rng: random.Random) -> Change | None:
    """One change of ``kind`` valid against ``m`` (None when none could be found)."""
    maker = _MAKERS.get(kind)
    if maker is None:
        raise ValueError(f"unknown change kind {kind!r}")
    return maker(kind, m, rng)


def changes(
    scale: float,
    seed: int,
    per_kind: int,
    kinds: tuple[str, ...] = KINDS,
) -> tuple[dict[str, list[Row]], list[Change], dict[str, list[Row]]]:
    """``(initial facts, change stream, facts after the stream)``.

    The stream holds ``per_kind`` changes of each kind in a seeded random order; each change
    is valid against the facts as left by the changes before it (a removal removes a present
    fact, an addition adds an absent one), so applying them in order to an engine loaded with
    the initial facts exercises real insertions and deletions.
    """
    shape, facts = _generate(scale, seed)
    rng = random.Random(f"drive-changes/{seed}")
    order = [k for k in kinds for _ in range(per_kind)]
    rng.shuffle(order)
    mirror = _Mirror(shape, facts)
    stream: list[Change] = []
    for kind in order:
        change = _make(kind, mirror, rng)
        if change is not None:
            mirror.apply(change)
            stream.append(change)
    return facts, stream, mirror.facts()


# ---------------------------------------------------------------------------------------------
# Check queries and a plain-Python reference of the program's meaning


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


# ---------------------------------------------------------------------------------------------
# The workload as contract-v1 JSON: a bundle, fact and entity events, requests (for
# ``rune.Authorizer``, ``rune benchmark`` and ``perf/bench_authorizer.py``)

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
