"""The base facts of the "drive" workload, generated deterministically from a seed.

Scale 1.0 is the workload of record (:data:`BASE`); every count scales linearly with
``scale``; the depth bounds do not. Entities are :class:`~rune.ivm.values.EntityRef` values
``User::"u17"``, ``Group::"g3"``, ``Folder::"f42"``, ``Doc::"d9"`` (:func:`user`,
:func:`group`, :func:`folder`, :func:`doc`).

Structure: every group and folder has a *level* (1 = root). An edge always goes from level
``L`` to level ``L - 1``, so nesting depth is bounded by the number of levels and the graphs
are acyclic.

Pitfall: the same ``(scale, seed)`` must give the same facts, byte for byte (benchmarks and
the change stream of :mod:`rune.workloads.drive_changes` depend on it): keep every draw from
the random generator in its place and order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from rune.ivm.values import EntityRef
from rune.workloads.drive_program import ROLES

__all__ = [
    "BASE",
    "FOLDER_LEVELS",
    "GROUP_GRANT_SHARE",
    "GROUP_LEVELS",
    "MEMBERSHIPS_PER_USER",
    "Row",
    "Shape",
    "doc",
    "folder",
    "generate",
    "generate_shaped",
    "group",
    "user",
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


def generate_shaped(scale: float, seed: int) -> tuple[Shape, dict[str, list[Row]]]:
    """The base facts per relation and the :class:`Shape` they were generated with."""
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
    return generate_shaped(scale, seed)[1]
