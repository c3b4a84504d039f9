"""The public facade of the Datalog engine: :class:`Engine`.

Values cross this boundary; inside, everything is dictionary-encoded integers. Every public
method either completes or raises a :class:`~rune.ivm.errors.DatalogError` without changing
the engine's state (values may still have been added to the internal dictionary, which is
invisible from outside). Invalid constructor options are a ``TypeError``/``ValueError``.
"""

from __future__ import annotations

import enum
import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from typing import Any, Final

from rune.ivm.analysis import Analysis, analyze, is_internal
from rune.ivm.delta import Delta
from rune.ivm.encoding import Facts, encode_facts, encode_pattern
from rune.ivm.errors import ArityError, InvalidValueError, UnknownRelationError
from rune.ivm.evaluate import Materialization
from rune.ivm.explain import Absence, Derivation, explain
from rune.ivm.index import Row
from rune.ivm.parser import parse
from rune.ivm.rebuild import (
    FactSnapshot,
    asserted_relations,
    check_arities,
    replace_changes,
    restore,
    take_snapshot,
)
from rune.ivm.results import Change, RelationInfo, decode_rows, encoded_change
from rune.ivm.values import Dictionary, Value, check_value

__all__ = ["SNAPSHOT", "Change", "Engine", "FactSnapshot", "RelationInfo"]


_RECLAIM_BATCH = 256
"""Dead ids are reclaimed (``Dictionary.reclaim``) by batches of at least this many."""

LARGE_BATCH = 10_000
"""Batches of at least this many rows run with Python's cyclic GC paused (see ``update``)."""


SETTLE_GROWTH = 100_000
"""A paused batch that stored at least this many tuples, and at least as many as the engine
held before, ends with one full collection (see :func:`_gc_paused`)."""


@contextmanager
def _gc_paused(size: Callable[[], int] | None = None) -> Iterator[None]:
    """Pause the cyclic GC for a bulk computation (see :meth:`Engine.update`).

    With ``size`` (the engine's stored tuples), a computation that at least doubled the
    engine (by :data:`SETTLE_GROWTH` tuples or more) ends with a full collection before the
    GC resumes. Everything it allocated is young: left as is, the next young collection
    would traverse all of it in the middle of some later single update, then the middle
    generation's collection again, then (being more than a quarter of the long-lived heap)
    a full one: three pauses of 0.3-1 s at drive scale 1.0 among the first few hundred
    updates after a load. One collection now, inside the call that is long anyway, is a
    third of that work and leaves nothing young. It traverses the whole process heap, as
    any full collection does; it does not freeze anything (see docs/datalog.md, *The
    cyclic GC*). Not done when the GC was already disabled by the caller.
    """
    if not gc.isenabled():
        yield
        return
    before = size() if size is not None else 0
    gc.disable()
    try:
        yield
        if size is not None:
            grown = size() - before
            if grown >= SETTLE_GROWTH and grown >= before:
                gc.collect()
    finally:
        gc.enable()


def _is_large(facts: object) -> bool:
    if not isinstance(facts, Mapping):
        return False
    n = 0
    for rows in facts.values():
        n += len(rows) if isinstance(rows, Sized) else LARGE_BATCH
    return n >= LARGE_BATCH


def _check_options(max_iterations: object, optimize: object) -> None:
    if max_iterations is not None:
        if type(max_iterations) is not int:
            raise TypeError(f"max_iterations must be an int or None, got {max_iterations!r}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be at least 1, got {max_iterations}")
    if type(optimize) is not bool:
        raise TypeError(f"optimize must be a bool, got {optimize!r}")


class _Default(enum.Enum):
    """Marks an option left to the snapshot's value (``None`` is a value of ``max_iterations``)."""

    SNAPSHOT = enum.auto()


SNAPSHOT: Final = _Default.SNAPSHOT


class _Discarded:
    """Stands for the views of a discarded engine: every use fails clearly."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this engine was discarded (replaced by another)")


class Engine:
    """An incrementally maintained Datalog program (dialect v1, docs/design.md §3).

    ``Engine(source)`` compiles the program and materializes it; ``update`` applies a batch
    of base-fact changes and returns the exact net change of every relation that changed.
    Not thread-safe: callers serialize access (the service runs it on one event loop), except
    that :meth:`from_snapshot` may build a new engine in another thread meanwhile (a program
    change off the owner thread: :meth:`snapshot`, :meth:`from_snapshot`, :meth:`warm`).

    Options (kept for the engine's lifetime, ``replace`` included):

    * ``max_iterations``: the most semi-naive rounds one recursive stratum may take during a
      bulk materialization (``Engine(...)`` and ``replace``); more raises
      :class:`~rune.ivm.errors.IterationLimitError`. ``None`` (default): unbounded. Updates
      are never bounded: stopping one halfway would leave views inconsistent with the facts
      already applied, and undoing it would cost as much as finishing it.
    * ``optimize``: ``True`` (default) orders each rule's joins greedily (most bound arguments
      first); ``False`` keeps the written order of the positive atoms. Same results; only
      the cost differs.
    """

    def __init__(
        self,
        source: str = "",
        *,
        on_demand: Iterable[str] = (),
        max_iterations: int | None = None,
        optimize: bool = True,
    ) -> None:
        _check_options(max_iterations, optimize)
        self._max_iterations = max_iterations
        self._optimize = optimize
        self._dictionary = Dictionary()
        self._arity: dict[str, int] = {}  # relations that only updates mention
        analysis = analyze(parse(source), on_demand)
        self._mat = Materialization(analysis, self._dictionary, optimize=optimize)
        self._dictionary.pin(self._mat.constants)
        self._dictionary.assigned.clear()
        with _gc_paused(self._stored):
            self._mat.materialize_all(max_iterations)

    @property
    def max_iterations(self) -> int | None:
        """Bound on the semi-naive rounds of a recursive stratum in bulk materialization."""
        return self._max_iterations

    @property
    def optimize(self) -> bool:
        """Whether join orders are chosen greedily (else: as written)."""
        return self._optimize

    # -- updates -----------------------------------------------------------------------------

    def update(self, insert: Facts | None = None, delete: Facts | None = None) -> dict[str, Change]:
        """Delete then insert base facts, as one atomic batch; return what changed.

        A fact both deleted and inserted in the batch ends up present. Asserting a present
        fact or retracting an absent one changes nothing. On any invalid relation name,
        arity or value the whole batch is rejected and nothing is applied.

        Values that no asserted fact and no program constant holds any more once the batch
        is applied are reclaimed by a later update (by batches of :data:`_RECLAIM_BATCH`):
        memory follows the live facts, and ids stay below 2**32 however many distinct values
        pass through.

        A large batch (:data:`LARGE_BATCH` rows or more) runs with Python's cyclic garbage
        collector paused: it allocates millions of objects that live on (index groups) or
        form no cycles (row tuples), which would otherwise trigger repeated collections that
        traverse the whole heap (a quarter of a bulk load's time) and find nothing. A batch
        that at least doubled the engine (a first load) ends with one full collection, so
        that later single updates do not pay for traversing what it allocated.
        """
        if _is_large(insert) or _is_large(delete):
            with _gc_paused(self._stored):
                return self._update(insert, delete)
        return self._update(insert, delete)

    def _stored(self) -> int:
        """Tuples stored in all relations (for :func:`_gc_paused`)."""
        return sum(map(len, self._mat.relations.values()))

    def _update(self, insert: Facts | None, delete: Facts | None) -> dict[str, Change]:
        dictionary = self._dictionary
        if len(dictionary.dead) >= _RECLAIM_BATCH:
            dictionary.reclaim()  # before encoding: new values reuse the freed ids
        arities: dict[str, int] = {}
        try:
            arity_of, storage_for = self.arity, self._analysis.storage_for_facts
            removals = encode_facts(
                delete or {}, "delete", dictionary, arity_of, storage_for, arities, True
            )
            flats: dict[str, tuple[int, list[int]]] = {}
            additions = encode_facts(
                insert or {}, "insert", dictionary, arity_of, storage_for, arities, False, flats
            )
        except BaseException:
            dictionary.rollback()  # the values this batch brought in: no fact holds them
            raise
        mat = self._mat
        plus, minus = _net_change(mat, additions, removals)
        for name, arity in arities.items():  # any mention fixes a new relation's arity
            if name not in self._arity and self._analysis.relations.get(name) is None:
                self._arity[name] = arity
            mat.relation(name, arity)
        if not plus and not minus:
            if dictionary.assigned:  # cannot happen: a new value's row is in ``plus``
                dictionary.rollback()
            return {}
        _count_references(dictionary.refs, plus, additions, flats)
        if dictionary.assigned:
            dictionary.assigned.clear()
        if minus:
            dictionary.release(minus.values())  # dead once applied: rules invent no values
        if not minus:
            affected = mat.bulk_strata(plus.keys())
            if affected is not None:
                return self._bulk_load(plus, affected)
        return self._changes(mat.apply(plus, minus))

    def _bulk_load(self, plus: dict[str, set[Row]], affected: list[Any]) -> dict[str, Change]:
        """Insert into empty relations whose dependents are empty too: evaluate from scratch.

        The first load into an engine takes this path. Every relation it changes was empty,
        so its change is its whole new content: the returned changes read snapshots of the
        relations (their rows are only built if the caller reads them), and no row of the
        load is kept beyond it. This is an update, so ``max_iterations`` does not apply.
        """
        mat = self._mat
        changed = set(plus)
        for name, rows in plus.items():
            mat.relations[name].insert(rows)
        plus.clear()  # the encoded rows can go: the relations hold the facts now
        changed.update(mat.materialize_strata(affected))
        era = self._dictionary.era
        return {
            name: encoded_change(rel.snapshot(), (), era)
            for name in changed
            if not is_internal(name) and (rel := mat.relations[name])
        }

    # -- program changes -----------------------------------------------------------------------

    def replace(self, source: str, *, on_demand: Iterable[str] = ()) -> dict[str, Change]:
        """Swap the rules, keeping asserted facts; return the net change of the relations.

        Uses the engine's ``max_iterations`` and ``optimize``. If ``source`` fails to compile,
        an asserted relation's arity conflicts with the new program, or materializing it
        fails (e.g. :class:`~rune.ivm.errors.IterationLimitError`), the error is raised and
        the old program stays active with all its data.
        """
        analysis = analyze(parse(source), on_demand)
        old = self._mat
        asserted = {  # relations the new program does not mention are kept only if non-empty
            user: storage
            for user, storage in self._asserted_relations().items()
            if old.relations[storage] or user in analysis.relations
        }
        check_arities(
            analysis, {user: old.relations[storage].arity for user, storage in asserted.items()}
        )
        dictionary = self._dictionary
        try:
            mat = Materialization(analysis, dictionary, optimize=self._optimize)
        except BaseException:
            dictionary.rollback()
            raise
        dictionary.pin(mat.constants)
        dictionary.assigned.clear()
        moves = {storage: analysis.storage_for_facts(user) for user, storage in asserted.items()}
        try:
            with _gc_paused():
                unchanged = mat.take_over(old, moves, self._max_iterations)  # old intact on error
            try:
                changes = self._replace_changes(old, mat, unchanged)
            except BaseException:
                mat.give_back()
                raise
        except BaseException:
            dictionary.unpin(mat.constants)
            raise
        self._mat = mat
        dictionary.unpin(old.constants)
        self._arity = {
            user: mat.relations[moves[storage]].arity
            for user, storage in asserted.items()
            if analysis.relations.get(user) is None
        }
        return changes

    # -- rebuilding elsewhere --------------------------------------------------------------

    def snapshot(self) -> FactSnapshot:
        """An immutable copy of the asserted facts, the values and the options.

        Call it on the owner thread (like every other method). It copies the encoded facts
        into flat arrays of ids and the dictionary's values and counts, in C-level passes that
        build no row (0.1-0.2 s at drive scale 1.0, 1.2M facts: ``perf/bench_rebuild.py``).
        Then :meth:`from_snapshot` may build the new engine in another thread, any number of
        times; the snapshot does not follow later updates.
        """
        return take_snapshot(self._mat, self._dictionary, self._max_iterations, self._optimize)

    @classmethod
    def from_snapshot(
        cls,
        source: str,
        snapshot: FactSnapshot,
        *,
        on_demand: Iterable[str] = (),
        max_iterations: int | _Default | None = SNAPSHOT,
        optimize: bool | _Default = SNAPSHOT,
    ) -> Engine:
        """A new engine running ``source`` over ``snapshot``'s facts: ``replace`` elsewhere.

        The result equals what ``replace(source, on_demand=on_demand)`` on the snapshotted
        engine would have left (same relations, arities, contents, answers; an explanation
        may show another of several derivations), with the snapshot's options unless given.
        Raises as ``replace`` does (:class:`~rune.ivm.errors.DatalogSyntaxError` and the other
        program errors, :class:`~rune.ivm.errors.ArityError` when a relation holding facts
        is used with another arity, :class:`~rune.ivm.errors.IterationLimitError`), and
        ``TypeError``/``ValueError`` for bad options.

        ``max_iterations`` bounds the strata ``replace`` would recompute; the strata it would
        move (same rules, inputs with the same rows) are computed unbounded. Pitfall: over a
        derived relation recomputed to the same rows, ``replace`` moves the strata above it;
        this cannot tell (the old derived rows are not in the snapshot) and bounds them.

        Thread safety: it reads only ``snapshot`` (never changed) and builds new objects, so
        it may run in a worker thread while the snapshotted engine keeps serving on its
        owner thread (and changing: the snapshot does not follow). Pitfalls: it holds the
        GIL for most of its time (pure Python; the longest C-level steps, on the largest
        relations, take 0.1-0.2 s at drive scale 1.0), so the owner thread runs slower
        meanwhile; and, as ``Engine(...)`` and ``replace``, it pauses Python's cyclic GC for
        the whole process while it loads and evaluates, after which the first collection
        traverses every object it made (unless the caller freezes them: docs/datalog.md).
        """
        if max_iterations is SNAPSHOT:
            max_iterations = snapshot.max_iterations
        if optimize is SNAPSHOT:
            optimize = snapshot.optimize
        _check_options(max_iterations, optimize)
        analysis = analyze(parse(source), on_demand)
        engine = cls.__new__(cls)  # its own class, built without __init__
        engine._max_iterations = max_iterations  # noqa: SLF001
        engine._optimize = optimize  # noqa: SLF001
        engine._dictionary, engine._mat, engine._arity = restore(  # noqa: SLF001
            snapshot, analysis, max_iterations, optimize, _gc_paused
        )
        return engine

    def warm(
        self, relations: Iterable[str], *, lookups: Iterable[tuple[str, Sequence[int]]] = ()
    ) -> None:
        """Compile now what the first ``contains`` of ``relations`` (and the first ``lookup``
        with the columns of ``lookups`` bound) would compile: on-demand plans, ordered by the
        data, and the indexes they read, built. Answers are unchanged; only the first call
        after it is faster. Meant for a new engine before it replaces a serving one (in the
        worker thread that built it, before the swap): on the engine in use, it is a call
        like any other (owner thread only). Unknown relations raise
        :class:`~rune.ivm.errors.UnknownRelationError`; columns out of range ``ValueError``.
        """
        mat = self._mat
        for name in relations:
            arity = self._check_relation(name)
            mat.checker(name)
            if mat.is_on_demand(name):
                mat.prepare_demand(name, tuple(range(arity)), exists=True)
        for name, columns in lookups:
            arity = self._check_relation(name)
            cols = tuple(sorted(set(columns)))
            if any(type(c) is not int or not 0 <= c < arity for c in cols):
                raise ValueError(f"columns of {name} are 0..{arity - 1}, got {columns!r}")
            if mat.is_on_demand(name):
                mat.prepare_demand(name, cols, exists=False)
            elif name in mat.relations and 0 < len(cols) < arity:
                mat.relations[name].index(cols)

    def _replace_changes(
        self, old: Materialization, mat: Materialization, unchanged: set[str]
    ) -> dict[str, Change]:
        return replace_changes(old, mat, unchanged, self._dictionary.era)

    def _asserted_relations(self) -> dict[str, str]:
        """User-facing relation -> the stored relation holding its asserted facts."""
        return asserted_relations(self._mat)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def _analysis(self) -> Analysis:
        return self._mat.analysis

    def arity(self, relation: str) -> int | None:
        """Arity of ``relation``, or ``None`` if neither program nor updates mention it."""
        spec = self._analysis.relations.get(relation)
        if spec is not None and not is_internal(relation):
            return spec.arity
        return self._arity.get(relation)

    def _check_relation(self, relation: str) -> int:
        arity = self.arity(relation) if isinstance(relation, str) else None
        if arity is None:
            raise UnknownRelationError(f"unknown relation {relation!r}")
        return arity

    def query(self, relation: str) -> set[tuple[Value, ...]]:
        """Current contents of ``relation`` (on-demand relations are evaluated in full)."""
        self._check_relation(relation)
        rel_name = relation
        if rel_name not in self._mat.relations and not self._mat.is_on_demand(rel_name):
            return set()
        return set(self._decode_all(self._mat.rows(rel_name)))

    def contains(self, relation: str, values: Sequence[Value]) -> bool:
        """Whether ``relation`` holds the tuple ``values`` (all columns bound)."""
        mat = self._mat
        check = mat.checkers.get(relation) or mat.checker(relation)
        if check is not None:
            found = check(values)  # the fast path: None when it does not apply
            if found is not None:
                return found
        encoded = encode_pattern(self._dictionary, relation, self._check_relation(relation), values)
        if encoded is None or (
            relation not in self._mat.relations and not self._mat.is_on_demand(relation)
        ):
            return False
        row, cols = encoded
        if len(cols) != len(row):
            raise InvalidValueError("contains() needs every column bound; use lookup()")
        return self._mat.contains(relation, row)

    def lookup(self, relation: str, pattern: Sequence[Value | None]) -> Iterator[tuple[Value, ...]]:
        """Tuples of ``relation`` equal to ``pattern`` wherever ``pattern`` is not ``None``.

        Materialized relations answer from an index on the bound columns (built on first use,
        then maintained); on-demand relations evaluate their rules with those columns bound.
        """
        encoded = encode_pattern(
            self._dictionary, relation, self._check_relation(relation), pattern
        )
        if encoded is None or (
            relation not in self._mat.relations and not self._mat.is_on_demand(relation)
        ):
            return iter(())
        row, cols = encoded
        value = self._dictionary.values.__getitem__
        # decoded now: ids may be reused by a later update before the caller iterates
        return iter([tuple(map(value, r)) for r in self._mat.lookup(relation, cols, row)])

    def explain(self, relation: str, values: Sequence[Value]) -> Derivation | Absence:
        """Why ``values`` is (a derivation tree) or is not (the rules tried) in ``relation``."""
        arity = self._check_relation(relation)
        if not isinstance(values, (tuple, list)) or len(values) != arity:
            raise ArityError(f"relation {relation} has arity {arity}; got {values!r}")
        return explain(self._mat, relation, tuple(check_value(v) for v in values))

    def relations(self) -> dict[str, RelationInfo]:
        out: dict[str, RelationInfo] = {}
        for name, spec in self._analysis.relations.items():
            if is_internal(name):
                continue
            kind = "on_demand" if spec.on_demand else "derived" if spec.derived else "base"
            rel = self._mat.relations.get(name)
            out[name] = RelationInfo(
                name, spec.arity, kind, None if spec.on_demand else len(rel or ())
            )
        for name, arity in self._arity.items():
            out[name] = RelationInfo(name, arity, "base", len(self._mat.relations.get(name) or ()))
        return out

    def discard(self) -> None:
        """Free this engine's views now, when another engine replaced it (``from_snapshot``):
        its compiled plans hold reference cycles that would otherwise wait for a full garbage
        collection, a pause as long as the heap is large. Changes already returned stay
        readable; any other call afterwards is an error."""
        self._mat.discard()
        self._mat = _Discarded()  # type: ignore[assignment]

    def stats(self) -> dict[str, int]:
        """Sizes: stored tuples, index entries, dictionary values, approximate bytes."""
        from rune.ivm.memory import measure

        return measure(self._mat, self._dictionary)

    # -- decoding --------------------------------------------------------------------------------

    def _decode_all(self, rows: Iterable[Row]) -> frozenset[tuple[Value, ...]]:
        return decode_rows(rows, self._dictionary.values)

    def _changes(self, deltas: dict[str, Delta]) -> dict[str, Change]:
        era = self._dictionary.era
        return {
            name: encoded_change(d.plus, d.minus, era)
            for name, d in deltas.items()
            if not is_internal(name) and d
        }


def _net_change(
    mat: Materialization, additions: dict[str, set[Row]], removals: dict[str, set[Row]]
) -> tuple[dict[str, set[Row]], dict[str, set[Row]]]:
    """The net change of a batch: ``plus`` rows not stored yet, ``minus`` rows stored; a row
    both deleted and inserted is in neither."""
    plus: dict[str, set[Row]] = {}
    minus: dict[str, set[Row]] = {}
    for name, rows in removals.items():
        rel = mat.relations.get(name)
        if rel is not None:
            present = rel.present(rows)
            if present:
                minus[name] = present
    for name, rows in additions.items():
        rel = mat.relations.get(name)
        gone = minus.get(name, set())
        if rel is not None and rel:
            fresh = rel.absent(rows)
            if gone:
                fresh |= rows & gone
        else:
            fresh = rows  # a new or empty relation: every row is new (and ours to keep)
        again = fresh & gone  # deleted and re-inserted: no net change
        if again:
            gone -= again
            fresh -= again
            if not gone:
                minus.pop(name, None)
        if fresh:
            plus[name] = fresh
    return plus, minus


def _count_references(
    refs: Any,
    plus: dict[str, set[Row]],
    additions: dict[str, set[Row]],
    flats: dict[str, tuple[int, list[int]]],
) -> None:
    """One reference per occurrence of a value in a new row (every new value is in one)."""
    for name, rows in plus.items():  # every new value is in a row of ``plus``
        flat = flats.get(name)
        if flat is not None and rows is additions[name] and len(rows) == flat[0]:
            for ident in flat[1]:  # all the batch's rows are new and distinct
                refs[ident] += 1
            continue
        for row in rows:
            for ident in row:
                refs[ident] += 1
