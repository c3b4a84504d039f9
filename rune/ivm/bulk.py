"""Bulk evaluation: strata computed from scratch (first load, new program, empty inputs).

Each stratum in order: one pass of every rule for a non-recursive stratum (its derivation
counts kept for later maintenance), and for a recursive one the closure path
(:mod:`rune.ivm.closure`) when it applies, else semi-naive rounds, in plain sets for a
*linear* stratum (its indexes built once from the final rows). ``max_iterations`` bounds the
rounds of one recursive stratum (:class:`~rune.ivm.errors.IterationLimitError`). After a bulk
computation DRed's re-derivation plans are ordered by the data (:meth:`BulkLoad.replan`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain

from rune.ivm.analysis import Stratum
from rune.ivm.closure import evaluate_closure
from rune.ivm.index import Row
from rune.ivm.store import drain
from rune.ivm.stored import Stored, check_rounds
from rune.ivm.strata import StratumPlans, source_relation
from rune.ivm.syntax import literal_relation

__all__ = ["BulkLoad"]


class BulkLoad(Stored):
    """Computes strata from scratch; see the module docstring."""

    def materialize_all(
        self,
        max_iterations: int | None = None,
        reused: Callable[[Stratum, set[str]], bool] | None = None,
        before: Callable[[str], tuple[int, Iterable[Row]] | None] | None = None,
    ) -> None:
        """Compute every materialized derived relation from the base relations.

        With ``max_iterations``, a recursive stratum still deriving new tuples after that many
        semi-naive rounds raises :class:`IterationLimitError`, leaving this materialization
        half computed: the caller discards it.

        ``reused`` and ``before`` mimic :meth:`take_over` (``Engine.from_snapshot``): a stratum
        for which ``reused(stratum, same)`` holds, ``same`` being the relations known to hold
        the rows they held before, is one ``take_over`` would have moved: it is not bounded,
        and its relations join ``same``. So do the relations of a computed stratum whose rows
        equal ``before(relation)`` (their number and the rows; ``None``: unknown).
        """
        same: set[str] = set()
        for sp in self.strata:
            own = sp.stratum.relations
            if reused is not None and reused(sp.stratum, same):
                self._materialize(sp, None)
                same.update(own)
                continue
            self._materialize(sp, max_iterations)
            if before is not None:
                for r in own:
                    old = before(r)
                    rel = self.relations[r]
                    if old is not None and old[0] == len(rel) and all(x in rel for x in old[1]):
                        same.add(r)
        self.replan()

    def replan(self, strata: Iterable[StratumPlans] | None = None) -> None:
        """After a bulk computation: order the re-derivation plans of the recursive strata
        holding rows by the data (see :meth:`StratumPlans.plan_rederivation`).

        A re-derivation checks one over-deleted row at a time, so its join order decides
        the cost of a deletion: for ``in_group(U, G)`` at drive scale 1.0, probing the ~2
        subgroups of ``G`` instead of scanning the ~30 groups of ``U``. The per-column
        distinct counts are recomputed (one pass over a column without an index). Indexes
        the new plans probe are built (and maintained from then on).
        """
        if not self.optimize:
            return
        todo = [
            sp
            for sp in (self.strata if strata is None else strata)
            if sp.stratum.recursive and any(self.relations[r] for r in sp.stratum.relations)
        ]
        if not todo:
            return
        self._distincts.clear()
        for sp in todo:
            sp.plan_rederivation(self.dictionary, True, self.primary, self._estimate)
            for plan in chain.from_iterable(sp.head_bound.values()):
                self._prepare_indexes(plan)
                self._read_by_plans.update(a.relation for a in plan.accesses)

    def stratum_inputs(self, stratum: Stratum) -> set[str]:
        """Relations the rules of ``stratum`` read, its own excepted."""
        inputs = {literal_relation(lit) for rule in stratum.rules for lit in rule.body}
        return {r for r in inputs if r is not None} - set(stratum.relations)

    def bulk_strata(self, names: Iterable[str]) -> list[StratumPlans] | None:
        """The strata that inserting into relations ``names`` affects, if a bulk load fits.

        It fits when those relations and every stratum depending on them (transitively) are
        empty: each such stratum's new content is then its evaluation from scratch, and its
        change is all of it. ``None`` when it does not fit.
        """
        changed = set(names)
        relations = self.relations
        if any(relations[n] for n in changed):
            return None
        affected = []
        for sp in self.strata:
            if not sp.inputs.isdisjoint(changed):
                if any(relations[r] for r in sp.stratum.relations):
                    return None
                affected.append(sp)
                changed.update(sp.stratum.relations)
        return affected

    def materialize_strata(self, strata: list[StratumPlans]) -> set[str]:
        """Compute ``strata`` (from :meth:`bulk_strata`) from scratch; their relations."""
        for sp in strata:
            self._materialize(sp, None)
        self.replan(strata)
        return {r for sp in strata for r in sp.stratum.relations}

    def _materialize(self, sp: StratumPlans, max_iterations: int | None) -> None:
        """Compute one stratum from scratch (its relations must be empty)."""
        self._deltas = {}
        self._views = {}
        if sp.stratum.recursive:
            seeds: dict[str, set[Row]] = {r: set() for r in sp.stratum.relations}
            closure = sp.closure if max_iterations is None else None
            copied = closure.copies if closure is not None else {}
            for plan in sp.full:
                if plan.rule not in copied:
                    self._run(plan, None, seeds[plan.rule.head.relation])
            if closure is not None and self._closure(sp, seeds):
                self._views = {}
                return
            for plan in sp.full:
                if plan.rule in copied:  # the closure path declined: derive them after all
                    self._run(plan, None, seeds[plan.rule.head.relation])
            if sp.linear:
                stored = self._fixpoint(sp, seeds, max_iterations)
                for r, rows in stored.items():
                    self.relations[r].insert(rows)
                    if self.cooperative:
                        drain(rows)
            else:
                self._propagate(sp, seeds, max_iterations, track=False)
        else:
            counts: dict[Row, int] = {}
            for plan in sp.full:
                self._run(plan, None, counts)
            rel = self.relations[sp.stratum.relations[0]]
            rel.insert(counts)
            rel.counts = {row: n for row, n in counts.items() if n != 1}
            if self.cooperative:
                drain(counts)
        self._views = {}

    def _fixpoint(
        self, sp: StratumPlans, seeds: dict[str, set[Row]], max_iterations: int | None
    ) -> dict[str, set[Row]]:
        """Semi-naive evaluation of a :attr:`StratumPlans.linear` stratum in plain sets.

        Its relations must be empty and stay so until the caller inserts the result (the
        internal plans never read them): each round is then set differences and unions,
        and the indexes are built once, from the final rows. Rounds as :meth:`_propagate`.
        """
        own = sp.stratum.relations
        stored: dict[str, set[Row]] = {r: set() for r in own}
        candidates = seeds
        rounds = 0
        while True:
            frontier = {r: rows - stored[r] for r, rows in candidates.items()}
            if not any(frontier.values()):
                return stored
            rounds += 1
            check_rounds(own, rounds, max_iterations)
            for r, rows in frontier.items():
                stored[r] |= rows
            candidates = {r: set() for r in own}
            for plan in sp.internal:
                rows = frontier[source_relation(plan)]
                if rows:
                    self._run(plan, rows, candidates[plan.rule.head.relation])

    def _closure(self, sp: StratumPlans, seeds: dict[str, set[Row]]) -> bool:
        """The closure path of a stratum (:func:`~rune.ivm.closure.evaluate_closure`)."""
        assert sp.closure is not None
        return evaluate_closure(sp.closure, self.relations, seeds, self.cooperative)
