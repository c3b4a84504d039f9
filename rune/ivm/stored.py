"""What every evaluation stage shares: the stored relations, the plans, and their views.

Plans read a relation through a *view*: its index map or rows (the new version), an
:class:`~rune.ivm.store.OldIndexView` / :class:`~rune.ivm.store.OldRowsView` of the version
before the update in progress (the delta rules of counting and DRed read both), or a
:class:`DemandView` of an on-demand relation. Views are resolved once per stage and cached
until the deltas change. The semi-naive insertion (:meth:`Stored._propagate`) and the data
statistics of the cost model (:meth:`Stored._estimate`) live here because the bulk,
maintenance and on-demand stages all use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rune.ivm.analysis import MAX_ARITY, Analysis, is_internal
from rune.ivm.delta import Delta, OldIndexView, OldRowsView
from rune.ivm.errors import IterationLimitError
from rune.ivm.index import EMPTY, Row, item_function, unpack
from rune.ivm.plan import Access, Plan
from rune.ivm.store import EMPTY_MAP, EMPTY_ROWS, Relation
from rune.ivm.strata import StratumPlans, choose_primaries, encode_constants, source_relation
from rune.ivm.values import Dictionary

__all__ = ["ALL_COLUMNS", "DemandView", "Stored", "check_rounds"]


class Stored:
    """The stored relations of one program, the plans of its strata, and what plans read.

    The state every stage of :class:`~rune.ivm.evaluate.Materialization` shares: relations
    by name, per-stratum plans, the deltas of the update in progress, and the views a plan
    reads (new or old version of a relation, or an on-demand relation computed on lookup).
    ``optimize=False`` compiles every plan with the rule body's written order of positive
    atoms instead of the greedy one (same results, different cost).
    """

    def __init__(
        self, analysis: Analysis, dictionary: Dictionary, *, optimize: bool = True
    ) -> None:
        self.analysis = analysis
        self.dictionary = dictionary
        self.optimize = optimize
        self.cooperative = False
        """Bulk evaluation frees its large temporaries item by item (see ``store.drain``)."""
        self.on_demand = frozenset(n for n, spec in analysis.relations.items() if spec.on_demand)
        counted = {s.relations[0] for s in analysis.strata if not s.recursive}
        constants: set[int] = set()
        for rules in analysis.rules_by_head.values():  # constants get ids before any lookup
            for rule in rules:
                encode_constants(rule, dictionary, constants)
        self.constants = frozenset(constants)
        """Ids of the program's constants: the engine pins them (see ``values.Dictionary``)."""
        self.primaries = choose_primaries(analysis, dictionary, optimize)
        self.relations: dict[str, Relation] = {
            name: Relation(name, spec.arity, counted=name in counted, primary=self.primary(name))
            for name, spec in analysis.relations.items()
            if not spec.on_demand
        }
        self.strata = [StratumPlans(s, dictionary, optimize, self.primary) for s in analysis.strata]
        self.checkers: dict[str, Callable[[Any], bool | None]] = {}
        # relations some compiled plan reads: their indexes stay as they are
        self._read_by_plans: set[str] = {
            a.relation for sp in self.strata for p in sp.plans() for a in p.accesses
        }
        self._distincts: dict[tuple[str, int], int] = {}
        self._demand_plans: dict[
            tuple[str, tuple[int, ...], bool], list[tuple[Any, tuple[Any, ...]]]
        ] = {}
        self._demand_reads: dict[tuple[str, tuple[int, ...], bool], list[Access]] = {}
        self._deltas: dict[str, Delta] = {}
        self._views: dict[tuple[Any, ...], Any] = {}
        # take_over: relations moved from the old materialization -> (relation, old name,
        # index columns it had, old primary), for give_back
        self._moved: dict[
            int, tuple[Relation, str, set[tuple[int, ...]], tuple[int, ...] | None]
        ] = {}
        for sp in self.strata:
            for plan in sp.plans():
                self._prepare_indexes(plan)

    def demand(
        self, name: str, cols: tuple[int, ...], head: Row | None, exists: bool, run: bool = True
    ) -> Any:
        """Evaluate an on-demand relation (implemented by :class:`~rune.ivm.demand.OnDemand`)."""
        raise NotImplementedError

    def discard(self) -> None:
        """Free the stored rows and compiled plans now: they hold reference cycles (plans
        and their namespaces), which only a full garbage collection would otherwise find."""
        for rel in self.relations.values():
            rel.discard()
        for container in (
            self.relations, self.checkers, self._distincts, self._demand_plans,
            self._demand_reads, self._deltas, self._views, self._moved,
        ):  # fmt: skip
            container.clear()
        self.strata.clear()

    def relation(self, name: str, arity: int) -> Relation:
        """The stored relation ``name``, created as a base relation if new."""
        rel = self.relations.get(name)
        if rel is None:
            rel = self.relations[name] = Relation(name, arity)
        return rel

    def primary(self, name: str) -> tuple[int, ...] | None:
        """Primary index columns of a stored relation of the program (else ``None``)."""
        return self.primaries.get(name)

    def is_on_demand(self, name: str) -> bool:
        return name in self.on_demand

    def arity(self, name: str) -> int:
        rel = self.relations.get(name)
        return rel.arity if rel is not None else self.analysis.relations[name].arity

    def _prepare_indexes(self, plan: Plan) -> None:
        for access in plan.accesses:
            if access.kind == "index" and not self.is_on_demand(access.relation):
                self.relations[access.relation].index(access.cols)

    def _view(self, access: Access, old: bool) -> Any:
        """What a plan reads for ``access``: the new version, or the old one during an update."""
        delta = self._deltas.get(access.relation) if old else None
        cache_key = (access.relation, access.kind, access.cols, delta is not None)
        view = self._views.get(cache_key)
        if view is not None:
            return view
        if self.is_on_demand(access.relation):
            view = DemandView(self, access.relation, access.kind, access.cols)
        else:
            rel = self.relations[access.relation]
            if delta is None:
                view = rel.index(access.cols).map if access.kind == "index" else rel.scan()
            elif len(rel) == len(delta.plus) and not delta.minus:  # old version was empty
                view = EMPTY_MAP if access.kind == "index" else EMPTY_ROWS
            elif access.kind == "index":
                view = OldIndexView(rel.index(access.cols), delta)
            else:
                view = OldRowsView(rel, delta)
        self._views[cache_key] = view
        return view

    def _run(
        self,
        plan: Plan,
        source: Iterable[Row] | dict[Row, int] | None,
        out: set[Row] | dict[Row, int] | None,
        head: Row | None = None,
        old_after: int | None = None,
        old: bool = False,
    ) -> Any:
        """Run ``plan``; literals after ``old_after`` (or all, with ``old``) read old versions."""
        views = [
            self._view(a, old or (old_after is not None and a.literal > old_after))
            for a in plan.accesses
        ]
        return plan.fn(source, out, head, *views)

    def _ready(self, plans: list[Plan], old: bool) -> list[tuple[Any, str, str, list[Any]]]:
        """``(fn, source relation, head relation, views)`` of delta ``plans``."""
        return [
            (
                p.fn,
                source_relation(p),
                p.rule.head.relation,
                [self._view(a, old) for a in p.accesses],
            )
            for p in plans
        ]

    def _propagate(
        self,
        sp: StratumPlans,
        seeds: dict[str, set[Row]],
        max_iterations: int | None = None,
        track: bool = True,
    ) -> dict[str, set[Row]]:
        """Insert ``seeds`` and everything they derive; return the rows newly stored.

        Without ``track`` the rows stored are not collected (bulk: nothing needs them), and
        the result is empty.

        Round 1 inserts the new ``seeds``; round *n* inserts what round *n-1*'s rows derived.
        With ``max_iterations``, needing round ``max_iterations + 1`` raises
        :class:`IterationLimitError` (one integer comparison per round, not per row).
        """
        relations = self.relations
        own = sp.stratum.relations
        inserted: dict[str, set[Row]] = {r: set() for r in own}
        candidates = seeds
        rounds = 0
        ready = self._ready(sp.internal, old=False)  # live views: resolved once for all rounds
        while True:
            # what the previous round derived and is not stored yet: stored now, in one pass
            frontier = {r: relations[r].insert_new(rows) for r, rows in candidates.items()}
            if not any(frontier.values()):
                return inserted
            rounds += 1
            # over the bound, the rows just stored are not undone: the caller discards this
            check_rounds(own, rounds, max_iterations)
            if track:
                for r, rows in frontier.items():
                    inserted[r].update(rows)
            candidates = {r: set() for r in own}
            for fn, source, head, views in ready:
                rows = frontier[source]
                if rows:
                    fn(rows, candidates[head], None, *views)

    def _estimate(self, name: str, cols: tuple[int, ...]) -> float:
        """Expected rows of ``name`` matching given values at ``cols`` (for join orders).

        The relation's size divided by the number of distinct keys, taking columns as
        independent; per-column distinct counts are computed once and kept (a plan only
        needs the orders of magnitude).
        """
        rel = self.relations.get(name)
        if rel is None:  # on demand: unknown, assume large
            return float(1 << 62)
        n = len(rel)
        keys = 1
        for c in cols:
            keys *= self._distinct(rel, c)
        return n / max(1, min(n, keys))

    def _distinct(self, rel: Relation, col: int) -> int:
        found = self._distincts.get((rel.name, col))
        if found is None:
            found = self._distincts[(rel.name, col)] = rel.distinct(col)
        return found


def check_rounds(own: tuple[str, ...], rounds: int, max_iterations: int | None) -> None:
    """Raise :class:`IterationLimitError` when semi-naive round ``rounds`` of the stratum of
    relations ``own`` is past ``max_iterations`` (``None``: unbounded)."""
    if max_iterations is not None and rounds > max_iterations:
        names = tuple(r for r in own if not is_internal(r)) or own
        raise IterationLimitError(names, max_iterations)


ALL_COLUMNS = [tuple(range(n)) for n in range(MAX_ARITY + 1)]


class DemandView:
    """A view of an on-demand relation for plans of other on-demand relations."""

    __slots__ = ("cols", "kind", "mat", "name")

    def __init__(self, mat: Stored, name: str, kind: str, cols: tuple[int, ...]) -> None:
        self.mat = mat
        self.name = name
        self.kind = kind
        self.cols = cols

    def _head(self, key: Any) -> Row:
        arity = self.mat.analysis.relations[self.name].arity
        head = [0] * arity
        for col, value in zip(self.cols, unpack(key, len(self.cols)), strict=True):
            head[col] = value
        return tuple(head)

    def get(self, key: Any, default: Any = EMPTY) -> Iterable[Any]:
        """Items (see :mod:`rune.ivm.index`) of the rows whose ``cols`` make ``key``."""
        rows = self.mat.demand(self.name, self.cols, self._head(key), exists=False)
        item = item_function(self.mat.analysis.relations[self.name].arity, self.cols)
        return [item(row) for row in rows]

    def __contains__(self, row: object) -> bool:
        assert isinstance(row, tuple)
        return bool(self.mat.demand(self.name, tuple(range(len(row))), row, exists=True))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.mat.demand(self.name, (), None, exists=False))
