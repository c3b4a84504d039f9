"""Evaluation: bulk materialization and incremental maintenance of the strata.

:class:`Materialization` owns the stored relations of one compiled program and keeps every
materialized relation equal to the program's model over the current base facts.

* Bulk load (:meth:`Materialization.materialize_all`): each stratum in order, semi-naive
  evaluation for recursive strata, one pass of every rule for the others. ``max_iterations``
  bounds the semi-naive rounds of one recursive stratum (:class:`IterationLimitError`).
* Updates (:meth:`Materialization.apply`): base-relation deltas flow stratum by stratum.
  Non-recursive strata use *counting*: each stored row keeps its number of derivations, and a
  delta rule per body literal ``k`` joins the delta of ``k`` with the new version of the
  literals before it and the old version of those after it (the bilinear rule of DBSP), so
  the summed weights are the exact change in derivation counts. Recursive strata use *DRed*:
  over-delete everything with a derivation through a removed row (on the old state), remove
  it, re-derive what still has a one-step derivation, then propagate insertions semi-naively.

Each stratum's net change (rows added, rows removed) is recorded as a :class:`Delta` and is
what later strata and the caller see.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Any

from rune.ivm.analysis import Analysis, Stratum, is_internal
from rune.ivm.errors import IterationLimitError
from rune.ivm.plan import Access, Plan, compile_plan
from rune.ivm.store import (
    EMPTY,
    EMPTY_MAP,
    EMPTY_ROWS,
    Delta,
    OldIndexView,
    OldRowsView,
    Relation,
    Row,
)
from rune.ivm.syntax import Atom, Comparison, Const, Negation, Rule
from rune.ivm.values import Dictionary

__all__ = ["Materialization"]


class _StratumPlans:
    """Compiled plans of one stratum."""

    __slots__ = ("full", "head_bound", "inputs", "internal", "lower", "stratum")

    def __init__(self, stratum: Stratum, dictionary: Dictionary, optimize: bool) -> None:
        self.stratum = stratum
        own = set(stratum.relations)
        self.full = [compile_plan(rule, dictionary, optimize=optimize) for rule in stratum.rules]
        self.lower: list[Plan] = []  # delta plans whose source is a lower-stratum literal
        self.internal: list[Plan] = []  # delta plans whose source is a same-stratum literal
        for rule in stratum.rules:
            for k, lit in enumerate(rule.body):
                atom = lit.atom if isinstance(lit, Negation) else lit
                if not isinstance(atom, Atom):
                    continue
                plan = compile_plan(rule, dictionary, source=k, optimize=optimize)
                (self.internal if atom.relation in own else self.lower).append(plan)
        self.inputs = {_source_relation(p) for p in self.lower}
        self.head_bound: dict[str, list[Plan]] = {}
        if stratum.recursive:
            for rule in stratum.rules:
                arity = len(rule.head.args)
                self.head_bound.setdefault(rule.head.relation, []).append(
                    compile_plan(
                        rule,
                        dictionary,
                        bound=tuple(range(arity)),
                        exists=True,
                        optimize=optimize,
                    )
                )


def _source_relation(plan: Plan) -> str:
    assert plan.source is not None
    lit = plan.rule.body[plan.source]
    atom = lit.atom if isinstance(lit, Negation) else lit
    assert isinstance(atom, Atom)
    return atom.relation


def _encode_constants(rule: Rule, dictionary: Dictionary) -> None:
    for atom in (rule.head, *rule.body):
        terms = (
            (atom.left, atom.right)
            if isinstance(atom, Comparison)
            else atom.atom.args
            if isinstance(atom, Negation)
            else atom.args
        )
        for term in terms:
            if isinstance(term, Const):
                dictionary.encode(term.value)


def _literal_relation(lit: object) -> str | None:
    if isinstance(lit, Negation):
        return lit.atom.relation
    return lit.relation if isinstance(lit, Atom) else None


def _same_rows(rel: Relation, other: Relation | None) -> bool:
    """Whether two stored relations hold the same rows (counts aside)."""
    if other is None:
        return not rel.rows
    if len(rel.rows) != len(other.rows):
        return False
    a = rel.rows.keys() if isinstance(rel.rows, dict) else rel.rows
    b = other.rows.keys() if isinstance(other.rows, dict) else other.rows
    return a == b


def _source_negated(plan: Plan) -> bool:
    assert plan.source is not None
    return isinstance(plan.rule.body[plan.source], Negation)


class Materialization:
    """Stored relations of one program, kept equal to its model over the base facts.

    ``optimize=False`` compiles every plan with the rule body's written order of positive
    atoms instead of the greedy one (same results, different cost).
    """

    def __init__(
        self, analysis: Analysis, dictionary: Dictionary, *, optimize: bool = True
    ) -> None:
        self.analysis = analysis
        self.dictionary = dictionary
        self.optimize = optimize
        self.on_demand = frozenset(n for n, spec in analysis.relations.items() if spec.on_demand)
        counted = {s.relations[0] for s in analysis.strata if not s.recursive}
        self.relations: dict[str, Relation] = {
            name: Relation(name, spec.arity, counted=name in counted)
            for name, spec in analysis.relations.items()
            if not spec.on_demand
        }
        for rules in analysis.rules_by_head.values():  # constants get ids before any lookup
            for rule in rules:
                _encode_constants(rule, dictionary)
        self.strata = [_StratumPlans(s, dictionary, optimize) for s in analysis.strata]
        self._demand_plans: dict[
            tuple[str, tuple[int, ...], bool], list[tuple[Any, tuple[Any, ...]]]
        ] = {}
        self._deltas: dict[str, Delta] = {}
        self._views: dict[tuple[Any, ...], Any] = {}
        # take_over: relations moved from the old materialization -> (relation, old name,
        # index columns it had), for give_back
        self._moved: dict[int, tuple[Relation, str, set[tuple[int, ...]]]] = {}
        for sp in self.strata:
            for plan in (
                *sp.full,
                *sp.lower,
                *sp.internal,
                *chain.from_iterable(sp.head_bound.values()),
            ):
                self._prepare_indexes(plan)

    # -- relations ---------------------------------------------------------------------------

    def relation(self, name: str, arity: int) -> Relation:
        """The stored relation ``name``, created as a base relation if new."""
        rel = self.relations.get(name)
        if rel is None:
            rel = self.relations[name] = Relation(name, arity)
        return rel

    def is_on_demand(self, name: str) -> bool:
        return name in self.on_demand

    def arity(self, name: str) -> int:
        rel = self.relations.get(name)
        return rel.arity if rel is not None else self.analysis.relations[name].arity

    def _prepare_indexes(self, plan: Plan) -> None:
        for access in plan.accesses:
            if access.kind == "index" and not self.is_on_demand(access.relation):
                self.relations[access.relation].index(access.cols)

    # -- views ---------------------------------------------------------------------------------

    def _view(self, access: Access, old: bool) -> Any:
        """What a plan reads for ``access``: the new version, or the old one during an update."""
        delta = self._deltas.get(access.relation) if old else None
        cache_key = (access.relation, access.kind, access.cols, delta is not None)
        view = self._views.get(cache_key)
        if view is not None:
            return view
        if self.is_on_demand(access.relation):
            view = _DemandView(self, access.relation, access.kind, access.cols)
        else:
            rel = self.relations[access.relation]
            if delta is None:
                view = rel.index(access.cols).map if access.kind == "index" else rel.rows
            elif len(rel.rows) == len(delta.plus) and not delta.minus:  # old version was empty
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
        source: dict[Row, int] | None,
        out: dict[Row, int] | None,
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

    # -- bulk ------------------------------------------------------------------------------------

    def materialize_all(self, max_iterations: int | None = None) -> None:
        """Compute every materialized derived relation from the base relations.

        With ``max_iterations``, a recursive stratum still deriving new tuples after that many
        semi-naive rounds raises :class:`IterationLimitError`, leaving this materialization
        half computed: the caller discards it.
        """
        for sp in self.strata:
            self._materialize(sp, max_iterations)

    def _materialize(self, sp: _StratumPlans, max_iterations: int | None) -> None:
        """Compute one stratum from scratch (its relations must be empty)."""
        self._deltas = {}
        self._views = {}
        if sp.stratum.recursive:
            seeds: dict[str, set[Row]] = {r: set() for r in sp.stratum.relations}
            for plan in sp.full:
                out: dict[Row, int] = {}
                self._run(plan, None, out)
                seeds[plan.rule.head.relation].update(out)
            self._propagate(sp, seeds, max_iterations)
        else:
            counts: dict[Row, int] = {}
            for plan in sp.full:
                self._run(plan, None, counts)
            rel = self.relations[sp.stratum.relations[0]]
            rel.insert(counts)
            rel.rows.update(counts)
        self._views = {}

    def take_over(
        self,
        old: Materialization,
        asserted: dict[str, str],
        max_iterations: int | None = None,
    ) -> set[str]:
        """Become the materialization of a new program, reusing ``old``'s work.

        ``asserted`` maps each relation of ``old`` holding asserted facts to the relation
        that holds them under the new program; those relations are moved, not copied. A
        stratum whose rules are unchanged and whose inputs have unchanged contents is moved
        too; every other stratum is computed from scratch (bounded by ``max_iterations``).
        Returns the relations whose contents are the same as in ``old``.

        Once the caller commits to ``self``, ``old`` is unusable (they share relations). On any
        error ``old`` is left as it was (see :meth:`give_back`) and ``self`` must be discarded.
        """
        try:
            return self._take_over(old, asserted, max_iterations)
        except BaseException:
            self.give_back()
            raise

    def give_back(self) -> None:
        """Undo what :meth:`take_over` did to the old materialization's relations.

        Moved relations get their names back, and indexes built on them since the move are
        dropped (the old plans never read them). Only the old materialization is usable after.
        """
        for rel, name, indexes in self._moved.values():
            rel.name = name
            for cols in [c for c in rel.indexes if c not in indexes]:
                del rel.indexes[cols]
        self._moved = {}

    def _take_over(
        self, old: Materialization, asserted: dict[str, str], max_iterations: int | None
    ) -> set[str]:
        moved = self._moved
        unchanged: set[str] = set()
        for old_name, new_name in asserted.items():
            rel = old.relations[old_name]
            moved[id(rel)] = (rel, rel.name, set(rel.indexes))
            rel.name = new_name
            self.relations[new_name] = rel
            if old_name == new_name:
                unchanged.add(new_name)
        for name, rel in self.relations.items():
            if (
                name in unchanged
                or name in asserted.values()
                or name in self.analysis.rules_by_head
            ):
                continue
            if _same_rows(rel, old.relations.get(name)):  # a base relation empty in both
                unchanged.add(name)
        previous = {frozenset(sp.stratum.rules): sp for sp in old.strata}
        for sp in self.strata:
            own = sp.stratum.relations
            prior = previous.get(frozenset(sp.stratum.rules))
            inputs = {_literal_relation(lit) for rule in sp.stratum.rules for lit in rule.body}
            inputs.discard(None)
            if (
                prior is not None
                and prior.stratum.relations == own
                and inputs - set(own) <= unchanged
            ):
                for r in own:
                    rel = self.relations[r] = old.relations[r]
                    moved.setdefault(id(rel), (rel, rel.name, set(rel.indexes)))
                    unchanged.add(r)
                continue
            self._materialize(sp, max_iterations)
            unchanged.update(r for r in own if _same_rows(self.relations[r], old.relations.get(r)))
        for sp in self.strata:
            for plan in (
                *sp.full,
                *sp.lower,
                *sp.internal,
                *chain.from_iterable(sp.head_bound.values()),
            ):
                self._prepare_indexes(plan)
        return unchanged

    # -- incremental -----------------------------------------------------------------------------

    def apply(self, plus: dict[str, set[Row]], minus: dict[str, set[Row]]) -> dict[str, Delta]:
        """Apply net base changes (``plus`` absent rows, ``minus`` present rows)."""
        deltas: dict[str, Delta] = {}
        for name in plus.keys() | minus.keys():
            rel = self.relations[name]
            d = Delta(plus.get(name, set()), minus.get(name, set()))
            rel.remove(d.minus)
            rel.insert(d.plus)
            if d:
                deltas[name] = d
        self._deltas = deltas
        self._views = {}
        try:
            for sp in self.strata:
                if not sp.inputs.isdisjoint(deltas.keys()):
                    if sp.stratum.recursive:
                        self._dred(sp)
                    else:
                        self._count(sp)
        finally:
            self._deltas = {}
            self._views = {}
        return deltas

    def _count(self, sp: _StratumPlans) -> None:
        name = sp.stratum.relations[0]
        acc: dict[Row, int] = {}
        for plan in sp.lower:
            delta = self._deltas.get(_source_relation(plan))
            if delta:
                assert plan.source is not None
                self._run(plan, delta.signed(), acc, old_after=plan.source)
        rel = self.relations[name]
        counts = rel.rows
        assert isinstance(counts, dict)
        added: dict[Row, int] = {}
        removed: list[Row] = []
        for row, weight in acc.items():
            if not weight:
                continue
            before = counts.get(row, 0)
            after = before + weight
            if after < 0:
                raise AssertionError(f"negative derivation count for {name}{row}")
            if not before:
                added[row] = after
            elif not after:
                removed.append(row)
            else:
                counts[row] = after
        rel.remove(removed)
        rel.insert(added)
        counts.update(added)
        if added or removed:
            self._deltas[name] = Delta(set(added), set(removed))

    def _dred(self, sp: _StratumPlans) -> None:
        own = sp.stratum.relations
        deltas = self._deltas
        # 1. over-delete, on the old state
        doomed: dict[str, set[Row]] = {r: set() for r in own}
        frontier: dict[str, set[Row]] = {r: set() for r in own}
        for plan in sp.lower:
            delta = deltas.get(_source_relation(plan))
            rows = None if delta is None else delta.plus if _source_negated(plan) else delta.minus
            if rows:
                out: dict[Row, int] = {}
                self._run(plan, dict.fromkeys(rows, 1), out, old=True)
                head = plan.rule.head.relation
                fresh = out.keys() - doomed[head]
                doomed[head].update(fresh)
                frontier[head].update(fresh)
        while any(frontier.values()):
            nxt: dict[str, set[Row]] = {r: set() for r in own}
            for plan in sp.internal:
                rows = frontier[_source_relation(plan)]
                if rows:
                    out = {}
                    self._run(plan, dict.fromkeys(rows, 1), out, old=True)
                    head = plan.rule.head.relation
                    fresh = out.keys() - doomed[head]
                    doomed[head].update(fresh)
                    nxt[head].update(fresh)
            frontier = nxt
        # 2. remove
        for r in own:
            self.relations[r].remove(doomed[r])
        # 3. re-derive what still has a derivation, 4. insert, semi-naively
        seeds: dict[str, set[Row]] = {r: set() for r in own}
        for r in own:
            if not doomed[r]:
                continue
            ready = [
                (plan.fn, [self._view(a, old=False) for a in plan.accesses])
                for plan in sp.head_bound.get(r, [])
            ]
            found = seeds[r]
            for row in doomed[r]:
                for fn, views in ready:
                    if fn(None, None, row, *views):
                        found.add(row)
                        break
        for plan in sp.lower:
            delta = deltas.get(_source_relation(plan))
            rows = None if delta is None else delta.minus if _source_negated(plan) else delta.plus
            if rows:
                out = {}
                self._run(plan, dict.fromkeys(rows, 1), out)
                seeds[plan.rule.head.relation].update(out)
        inserted = self._propagate(sp, seeds)  # updates are never bounded (see Engine)
        for r in own:
            added = inserted[r] - doomed[r]
            removed = doomed[r] - inserted[r]
            if added or removed:
                deltas[r] = Delta(added, removed)

    def _propagate(
        self, sp: _StratumPlans, seeds: dict[str, set[Row]], max_iterations: int | None = None
    ) -> dict[str, set[Row]]:
        """Insert ``seeds`` and everything they derive; return the rows newly stored.

        Round 1 inserts the new ``seeds``; round *n* inserts what round *n-1*'s rows derived.
        With ``max_iterations``, needing round ``max_iterations + 1`` raises
        :class:`IterationLimitError` (one integer comparison per round, not per row).
        """
        relations = self.relations
        inserted: dict[str, set[Row]] = {r: set() for r in sp.stratum.relations}
        frontier = {
            r: {row for row in rows if row not in relations[r].rows} for r, rows in seeds.items()
        }
        rounds = 0
        while any(frontier.values()):
            rounds += 1
            if max_iterations is not None and rounds > max_iterations:
                own = sp.stratum.relations
                names = tuple(r for r in own if not is_internal(r)) or own
                raise IterationLimitError(names, max_iterations)
            for r, rows in frontier.items():
                relations[r].insert(rows)
                inserted[r].update(rows)
            nxt: dict[str, set[Row]] = {r: set() for r in sp.stratum.relations}
            for plan in sp.internal:
                rows = frontier[_source_relation(plan)]
                if rows:
                    out: dict[Row, int] = {}
                    self._run(plan, dict.fromkeys(rows, 1), out)
                    head = plan.rule.head.relation
                    stored = relations[head].rows
                    target = nxt[head]
                    for row in out:
                        if row not in stored:
                            target.add(row)
            frontier = nxt
        return inserted

    # -- on-demand relations ---------------------------------------------------------------------

    def demand(self, name: str, cols: tuple[int, ...], head: Row | None, exists: bool) -> Any:
        """Evaluate on-demand relation ``name`` with ``head`` values bound at ``cols``.

        Returns a bool with ``exists``, else the set of matching rows.
        """
        key = (name, cols, exists)
        ready = self._demand_plans.get(key)
        if ready is None:
            ready = []
            for rule in self.analysis.rules_by_head[name]:
                plan = compile_plan(
                    rule, self.dictionary, bound=cols, exists=exists, optimize=self.optimize
                )
                self._prepare_indexes(plan)
                # on-demand plans always read the current version: views are live, resolve once
                views = tuple(self._view(a, old=False) for a in plan.accesses)
                ready.append((plan.fn, views))
            self._demand_plans[key] = ready
        if exists:
            return any(fn(None, None, head, *views) for fn, views in ready)
        out: dict[Row, int] = {}
        for fn, views in ready:
            fn(None, out, head, *views)
        return out.keys()

    # -- reading -----------------------------------------------------------------------------------

    def rows(self, name: str) -> Iterable[Row]:
        if self.is_on_demand(name):
            return self.demand(name, (), None, exists=False)  # type: ignore[no-any-return]
        return self.relations[name].rows

    def contains(self, name: str, row: Row) -> bool:
        if name in self.on_demand:
            return bool(self.demand(name, _ALL_COLUMNS[len(row)], row, exists=True))
        return row in self.relations[name].rows

    def lookup(self, name: str, cols: tuple[int, ...], row: Row) -> Iterable[Row]:
        """Rows of ``name`` equal to ``row`` at ``cols`` (other positions of ``row`` ignored)."""
        if self.is_on_demand(name):
            return self.demand(name, cols, row, exists=False)  # type: ignore[no-any-return]
        rel = self.relations[name]
        if not cols:
            return rel.rows
        if len(cols) == rel.arity:
            return (row,) if row in rel.rows else EMPTY
        key = row[cols[0]] if len(cols) == 1 else tuple(row[c] for c in cols)
        return rel.index(cols).map.get(key, EMPTY)

    def user_relations(self) -> Iterator[str]:
        return (name for name in self.relations if not is_internal(name))

    def rules_for(self, name: str) -> list[Rule]:
        return self.analysis.rules_by_head.get(name, [])


_ALL_COLUMNS = [tuple(range(n)) for n in range(64)]


class _DemandView:
    """A view of an on-demand relation for plans of other on-demand relations."""

    __slots__ = ("cols", "kind", "mat", "name")

    def __init__(self, mat: Materialization, name: str, kind: str, cols: tuple[int, ...]) -> None:
        self.mat = mat
        self.name = name
        self.kind = kind
        self.cols = cols

    def _head(self, key: Any) -> Row:
        arity = self.mat.analysis.relations[self.name].arity
        head = [0] * arity
        values = (key,) if len(self.cols) == 1 else key
        for col, value in zip(self.cols, values, strict=True):
            head[col] = value
        return tuple(head)

    def get(self, key: Any, default: Any = EMPTY) -> Iterable[Row]:
        return self.mat.demand(self.name, self.cols, self._head(key), exists=False)  # type: ignore[no-any-return]

    def __contains__(self, row: object) -> bool:
        assert isinstance(row, tuple)
        return bool(self.mat.demand(self.name, tuple(range(len(row))), row, exists=True))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.mat.demand(self.name, (), None, exists=False))
