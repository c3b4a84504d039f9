"""Single-change workloads of "drive": a seeded stream of valid insertions and deletions.

:func:`changes` keeps the generator's invariant (a moved folder or an added group edge gets a
new parent on the same level as before), so a long stream of changes never grows the depth or
creates a cycle.

Pitfall: the stream must stay byte-for-byte the same for a seed (benchmarks replay it): keep
every draw from the random generator, and the order of the makers' attempts, as they are.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from rune.ivm.values import EntityRef
from rune.workloads.drive_facts import (
    GROUP_GRANT_SHARE,
    Row,
    Shape,
    folder,
    generate_shaped,
    group,
    user,
)
from rune.workloads.drive_program import ROLES

__all__ = ["KINDS", "Change", "changes"]

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
    shape, facts = generate_shaped(scale, seed)
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
