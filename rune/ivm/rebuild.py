"""Program changes that keep the asserted facts: what ``Engine.replace`` and
``Engine.from_snapshot`` read, reuse and report, and :class:`FactSnapshot`.

``replace`` swaps the program of an engine in place (:meth:`Materialization.take_over` moves
the relations and strata it can reuse); ``snapshot`` copies the asserted facts into a
:class:`FactSnapshot`, from which :func:`restore` builds the materialization of another
program, in any thread, as ``replace`` would have left it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from rune.ivm.analysis import Analysis, Stratum, asserted_name, is_base, is_internal
from rune.ivm.errors import ArityError
from rune.ivm.evaluate import Materialization
from rune.ivm.index import Row
from rune.ivm.results import Change, encoded_change
from rune.ivm.store import RowsCopy
from rune.ivm.syntax import Rule
from rune.ivm.values import Dictionary, Era, Value

__all__ = [
    "FactSnapshot",
    "asserted_relations",
    "check_arities",
    "replace_changes",
    "restore",
    "reuse",
    "take_snapshot",
]


class FactSnapshot:
    """An immutable copy of what an engine's facts are: asserted facts, values, options.

    Made by :meth:`Engine.snapshot` on the engine's owner thread; read by
    :meth:`Engine.from_snapshot`, in any thread, any number of times. It shares no mutable
    object with the engine (facts are copied as encoded groups: one C-level pass per
    relation; the values themselves, immutable, are shared), so the engine may go on
    answering and changing meanwhile. Program facts are not part of it (they come with a
    program), nor are derived tuples (the new program derives its own).
    """

    __slots__ = (
        "_constants",
        "_derived",
        "_facts",
        "_max_iterations",
        "_optimize",
        "_refs",
        "_storage",
        "_strata",
        "_values",
    )

    def __init__(
        self,
        facts: dict[str, RowsCopy],
        values: tuple[Value, ...],
        refs: array[int],
        constants: frozenset[int],
        max_iterations: int | None,
        optimize: bool,
        program: tuple[
            dict[str, str], frozenset[str], frozenset[tuple[frozenset[Rule], tuple[str, ...]]]
        ],
    ) -> None:
        self._facts = facts
        # of the snapshotted program, for what replace would reuse: where each relation's
        # facts were stored, the relations it derived, its strata (rules, relations)
        self._storage, self._derived, self._strata = program
        self._values = values  # the dictionary's, slot per id
        self._refs = refs
        self._constants = constants  # the ids the snapshotted program pinned
        self._max_iterations = max_iterations
        self._optimize = optimize

    @property
    def max_iterations(self) -> int | None:
        """The snapshotted engine's ``max_iterations`` (the default of ``from_snapshot``)."""
        return self._max_iterations

    @property
    def optimize(self) -> bool:
        """The snapshotted engine's ``optimize`` (the default of ``from_snapshot``)."""
        return self._optimize

    def arities(self) -> dict[str, int]:
        """Relation -> arity, for every relation that may hold asserted facts (maybe none)."""
        return {name: rows.arity for name, rows in self._facts.items()}

    def __len__(self) -> int:
        """Number of asserted facts."""
        return sum(map(len, self._facts.values()))

    def __repr__(self) -> str:
        return f"<FactSnapshot of {len(self):,} facts in {len(self._facts)} relation(s)>"


def check_arities(analysis: Analysis, stored: Mapping[str, int]) -> None:
    """Relations holding asserted facts (name -> arity) must keep their arity in ``analysis``."""
    for user, arity in stored.items():
        spec = analysis.relations.get(user)
        if spec is not None and spec.arity != arity:
            raise ArityError(
                f"relation {user} holds facts of arity {arity} but the new program uses "
                f"it with {spec.arity} argument(s)",
                spec.line,
                spec.column,
            )


def asserted_relations(mat: Materialization) -> dict[str, str]:
    """User-facing relation -> the stored relation holding its asserted facts."""
    out: dict[str, str] = {}
    for name in mat.relations:
        if is_base(name):
            out[asserted_name(name)] = name
        elif not is_internal(name) and name not in mat.analysis.rules_by_head:
            out[name] = name
    return out


def replace_changes(
    old: Materialization, mat: Materialization, unchanged: set[str], era: Era
) -> dict[str, Change]:
    """Net change of every user relation from ``old`` to ``mat`` (``unchanged``: moved)."""
    changes: dict[str, Change] = {}
    for name in {*old.user_relations(), *mat.user_relations()}:
        if name in unchanged or old.is_on_demand(name) or mat.is_on_demand(name):
            continue
        before = old.relations.get(name)
        after = mat.relations.get(name)
        before_rows = set(before) if before is not None else set()
        after_rows = set(after) if after is not None else set()
        added = after_rows - before_rows
        removed = before_rows - after_rows
        if added or removed:
            changes[name] = encoded_change(added, removed, era)
    return changes


def take_snapshot(
    mat: Materialization, dictionary: Dictionary, max_iterations: int | None, optimize: bool
) -> FactSnapshot:
    """The :class:`FactSnapshot` of an engine (see ``Engine.snapshot``)."""
    storage = asserted_relations(mat)
    facts = {user: mat.relations[name].copy() for user, name in storage.items()}
    values, refs = dictionary.frozen()
    program = (
        storage,
        frozenset(mat.analysis.rules_by_head),
        frozenset((frozenset(s.rules), s.relations) for s in mat.analysis.strata),
    )
    return FactSnapshot(facts, values, refs, mat.constants, max_iterations, optimize, program)


def reuse(
    snapshot: FactSnapshot, kept: dict[str, RowsCopy], mat: Materialization, ids: Any
) -> tuple[Callable[[Stratum, set[str]], bool], Callable[[str], tuple[int, Iterable[Row]] | None]]:
    """What ``replace`` would reuse, for :meth:`Materialization.materialize_all`.

    ``replace`` moves a stratum whose rules are those of an old stratum and whose inputs hold
    the rows they held (asserted relations stored under the same name, relations empty then
    and now, strata moved, strata recomputed to the same rows), and does not bound it again.
    Without the old derived rows, a recomputed stratum counts as unchanged only if its rows
    are those of a relation that was a base relation of the old program (its facts).
    """
    analysis = mat.analysis
    storage = snapshot._storage
    unchanged = {
        name
        for user, name in storage.items()
        if user in kept and analysis.storage_for_facts(user) == name
    }
    held = snapshot._derived | {
        name for user, name in storage.items() if len(snapshot._facts[user])
    }
    old_strata = snapshot._strata
    rules = analysis.rules_by_head

    def reused(stratum: Stratum, same: set[str]) -> bool:
        return (frozenset(stratum.rules), stratum.relations) in old_strata and all(
            r in unchanged
            or r in same
            or (r not in rules and not mat.relations[r] and r not in held)
            for r in mat.stratum_inputs(stratum)
        )

    def before(name: str) -> tuple[int, Iterable[Row]] | None:
        if name in snapshot._derived:
            return None  # derived by the old program: its rows were not copied
        facts = snapshot._facts.get(name)
        if facts is None or storage.get(name) != name:
            return (0, ()) if name not in held else None
        return len(facts), facts.rows(ids)

    return reused, before


def restore(
    snapshot: FactSnapshot,
    analysis: Analysis,
    max_iterations: int | None,
    optimize: bool,
    paused: Callable[[], AbstractContextManager[None]],
) -> tuple[Dictionary, Materialization, dict[str, int]]:
    """The dictionary, materialization and update-only arities of an engine running
    ``analysis`` over ``snapshot``'s facts (see ``Engine.from_snapshot``), loaded and
    evaluated within ``paused()`` (the engine's pause of the cyclic GC)."""
    kept = {  # as replace: relations the program does not mention only if they hold facts
        user: rows
        for user, rows in snapshot._facts.items()
        if len(rows) or user in analysis.relations
    }
    check_arities(analysis, {user: rows.arity for user, rows in kept.items()})
    # values no fact holds (the snapshotted program's constants only, say) are left out
    dictionary, canon = Dictionary.restore(snapshot._values, snapshot._refs, snapshot._constants)
    mat = Materialization(analysis, dictionary, optimize=optimize)
    dictionary.pin(mat.constants)
    dictionary.assigned.clear()
    ids = canon.__getitem__
    mat.cooperative = True  # other threads run meanwhile: no long C-level frees
    with paused():
        for user, facts in kept.items():
            rows = facts.rows(ids)  # built as the relation's indexes read them
            mat.relation(analysis.storage_for_facts(user), facts.arity).insert(rows)
        mat.materialize_all(max_iterations, *reuse(snapshot, kept, mat, ids))
    mat.cooperative = False
    arity = {
        user: rows.arity for user, rows in kept.items() if analysis.relations.get(user) is None
    }
    return dictionary, mat, arity
