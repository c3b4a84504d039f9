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

from collections.abc import Callable, Iterable, Iterator
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

from rune.ivm.analysis import MAX_ARITY, Analysis, Stratum, is_internal
from rune.ivm.codegen import define
from rune.ivm.errors import IterationLimitError
from rune.ivm.plan import Access, Plan, compile_checks, compile_plan
from rune.ivm.store import (
    EMPTY,
    EMPTY_MAP,
    EMPTY_ROWS,
    GROUP_LIMIT,
    Delta,
    OldIndexView,
    OldRowsView,
    Relation,
    Row,
    drain,
    item_function,
    singleton_or_list,
    unpack,
)
from rune.ivm.syntax import Atom, Comparison, Const, Negation, Rule, Var
from rune.ivm.values import Dictionary

__all__ = ["Materialization"]


Primary = Callable[[str], "tuple[int, ...] | None"]

SINGLE_INDEX_SLACK = 2.0
"""On-demand plans read a free relation through a single index unless that costs more than
this many times the plans using several (see ``Materialization._demand_plans_for``)."""


CLOSURE_MEMO = 16
"""The closure path gives up (for semi-naive evaluation) once the memoized reachable sets
hold more than this many ids per seed row (see ``Materialization._closure``)."""


_NO_IDS: frozenset[int] = frozenset()


class _Closure:
    """A stratum computing a transitive closure: one binary relation ``p`` whose recursive
    rules are all ``p(X, Z) :- p(X, Y), e(Y, Z)`` up to argument order, ``e`` of a lower
    stratum: ``X`` is carried from the body's ``p`` to the head at column ``carried``.

    ``edges`` lists, per recursive rule, ``e`` and the column of ``Y`` in ``e``.
    """

    __slots__ = ("carried", "copies", "edges", "relation")

    def __init__(
        self,
        relation: str,
        carried: int,
        edges: list[tuple[str, int]],
        copies: dict[Rule, tuple[str, int]],
    ) -> None:
        self.relation = relation
        self.carried = carried
        self.edges = edges
        self.copies = copies
        """Seed rules copying a lower binary relation (``p(X, Y) :- s(X, Y)`` or
        ``p(X, Y) :- s(Y, X)``): the relation and its column that lands in the carried one.
        Their rows are read from that relation's indexes instead of being derived."""

    @classmethod
    def detect(cls, stratum: Stratum) -> _Closure | None:
        if not stratum.recursive or len(stratum.relations) != 1:
            return None
        (name,) = stratum.relations
        carried: set[int] = set()
        edges: list[tuple[str, int]] = []
        seeds: list[Rule] = []
        for rule in stratum.rules:
            if not any(_literal_relation(lit) == name for lit in rule.body):
                seeds.append(rule)  # a seed rule: evaluated by its full plan (or copied)
                continue
            if len(rule.body) != 2 or not all(isinstance(lit, Atom) for lit in rule.body):
                return None
            own, lower = sorted(rule.body, key=lambda a: a.relation != name)  # type: ignore[union-attr]
            assert isinstance(own, Atom) and isinstance(lower, Atom)
            if own.relation != name or lower.relation == name:
                return None
            head = rule.head.args
            terms = (*head, *own.args, *lower.args)
            if len(terms) != 6 or not all(isinstance(t, Var) and not t.anonymous for t in terms):
                return None
            for c in (0, 1):
                x, y, z = own.args[c], own.args[1 - c], head[1 - c]
                if head[c] != x or len({x, y, z}) != 3 or set(lower.args) != {y, z}:
                    continue
                carried.add(c)
                edges.append((lower.relation, lower.args.index(y)))
                break
            else:
                return None
        if len(carried) != 1:
            return None
        c = carried.pop()
        copies: dict[Rule, tuple[str, int]] = {}
        for rule in seeds:
            (lit,) = rule.body if len(rule.body) == 1 else (None,)
            head = rule.head.args
            if (
                isinstance(lit, Atom)
                and len(lit.args) == 2
                and all(isinstance(t, Var) and not t.anonymous for t in (*head, *lit.args))
                and head[0] != head[1]
                and set(head) == set(lit.args)
            ):
                copies[rule] = (lit.relation, lit.args.index(head[c]))
        return cls(name, c, edges, copies)


class _StratumPlans:
    """Compiled plans of one stratum."""

    __slots__ = (
        "checks",
        "closure",
        "full",
        "head_bound",
        "inputs",
        "internal",
        "linear",
        "lower",
        "stratum",
    )

    def __init__(
        self, stratum: Stratum, dictionary: Dictionary, optimize: bool, primary: Primary
    ) -> None:
        self.stratum = stratum
        own = set(stratum.relations)
        # recursive strata need no weights (semi-naive, DRed): plans collect rows into sets
        collect = stratum.recursive
        self.full = [
            compile_plan(rule, dictionary, optimize=optimize, primary=primary, collect=collect)
            for rule in stratum.rules
        ]
        self.lower: list[Plan] = []  # delta plans whose source is a lower-stratum literal
        self.internal: list[Plan] = []  # delta plans whose source is a same-stratum literal
        for rule in stratum.rules:
            for k, lit in enumerate(rule.body):
                atom = lit.atom if isinstance(lit, Negation) else lit
                if not isinstance(atom, Atom):
                    continue
                plan = compile_plan(
                    rule, dictionary, source=k, optimize=optimize, primary=primary, collect=collect
                )
                (self.internal if atom.relation in own else self.lower).append(plan)
        self.inputs = {_source_relation(p) for p in self.lower}
        # every internal delta plan reads its own stratum only through its delta source: a
        # bulk evaluation can keep the stratum's rows in plain sets and index them once
        self.linear = all(a.relation not in own for p in self.internal for a in p.accesses)
        self.closure = _Closure.detect(stratum)
        self.head_bound: dict[str, list[Plan]] = {}
        self.checks: dict[str, Callable[..., None]] = {}
        if stratum.recursive:
            self.plan_rederivation(dictionary, optimize, primary)

    def plan_rederivation(
        self,
        dictionary: Dictionary,
        optimize: bool,
        primary: Primary,
        estimate: Callable[[str, tuple[int, ...]], float] | None = None,
    ) -> None:
        """(Re)compile the head-bound plans DRed re-derives with; with ``estimate`` (the
        data's statistics) their join orders follow the expected rows, and each relation's
        plans are tried cheapest first."""
        head_bound: dict[str, list[Plan]] = {}
        for rule in self.stratum.rules:
            arity = len(rule.head.args)
            head_bound.setdefault(rule.head.relation, []).append(
                compile_plan(
                    rule,
                    dictionary,
                    bound=tuple(range(arity)),
                    exists=True,
                    optimize=optimize,
                    primary=primary,
                    estimate=estimate if optimize else None,
                )
            )
        if estimate is not None and optimize:
            for plans in head_bound.values():
                plans.sort(key=lambda p: p.cost)
        self.head_bound = head_bound
        self.checks = {r: compile_checks(plans, dictionary) for r, plans in head_bound.items()}

    def plans(self) -> Iterator[Plan]:
        yield from self.full
        yield from self.lower
        yield from self.internal
        yield from chain.from_iterable(self.head_bound.values())


def _choose_primaries(
    analysis: Analysis, dictionary: Dictionary, optimize: bool
) -> dict[str, tuple[int, ...]]:
    """Primary index columns of each stored relation of arity >= 2.

    The primary index is the storage (see :mod:`rune.ivm.store`), so choosing one that plans
    probe anyway saves a whole index: among the column sets the plans probe (those of the
    strata, and the on-demand rules with every head column bound, as checks call them), the
    fewest columns, then the lowest; ``(0,)`` when plans probe none.
    """
    probed: dict[str, set[tuple[int, ...]]] = {}
    plans: list[Plan] = []
    for stratum in analysis.strata:
        plans.extend(_StratumPlans(stratum, dictionary, optimize, _no_primary).plans())
    for name, spec in analysis.relations.items():
        if spec.on_demand:
            for rule in analysis.rules_by_head.get(name, []):
                bound = tuple(range(spec.arity))
                plans.append(
                    compile_plan(rule, dictionary, bound=bound, exists=True, optimize=optimize)
                )
    for plan in plans:
        for access in plan.accesses:
            if access.kind == "index":
                probed.setdefault(access.relation, set()).add(access.cols)
    out: dict[str, tuple[int, ...]] = {}
    for name, spec in analysis.relations.items():
        if spec.arity >= 2 and not spec.on_demand:
            options = probed.get(name)
            out[name] = min(options, key=lambda c: (len(c), c)) if options else (0,)
    return out


def _no_primary(relation: str) -> tuple[int, ...] | None:
    return None


def _source_relation(plan: Plan) -> str:
    assert plan.source is not None
    return plan.source_relation


def _encode_constants(rule: Rule, dictionary: Dictionary, out: set[int]) -> None:
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
                out.add(dictionary.encode(term.value))


def _literal_relation(lit: object) -> str | None:
    if isinstance(lit, Negation):
        return lit.atom.relation
    return lit.relation if isinstance(lit, Atom) else None


def _same_rows(rel: Relation, other: Relation | None) -> bool:
    """Whether two stored relations hold the same rows (counts aside)."""
    if other is None:
        return not rel
    if len(rel) != len(other):
        return False
    return set(rel) == set(other)


def _source_negated(plan: Plan) -> bool:
    return plan.source_negated


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
        self.cooperative = False
        """Bulk evaluation frees its large temporaries item by item (see ``store.drain``)."""
        self.on_demand = frozenset(n for n, spec in analysis.relations.items() if spec.on_demand)
        counted = {s.relations[0] for s in analysis.strata if not s.recursive}
        constants: set[int] = set()
        for rules in analysis.rules_by_head.values():  # constants get ids before any lookup
            for rule in rules:
                _encode_constants(rule, dictionary, constants)
        self.constants = frozenset(constants)
        """Ids of the program's constants: the engine pins them (see ``values.Dictionary``)."""
        self.primaries = _choose_primaries(analysis, dictionary, optimize)
        self.relations: dict[str, Relation] = {
            name: Relation(name, spec.arity, counted=name in counted, primary=self.primary(name))
            for name, spec in analysis.relations.items()
            if not spec.on_demand
        }
        self.strata = [
            _StratumPlans(s, dictionary, optimize, self.primary) for s in analysis.strata
        ]
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

    # -- relations ---------------------------------------------------------------------------

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

    # -- bulk ------------------------------------------------------------------------------------

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

    def replan(self, strata: Iterable[_StratumPlans] | None = None) -> None:
        """After a bulk computation: order the re-derivation plans of the recursive strata
        holding rows by the data (see :meth:`_StratumPlans.plan_rederivation`).

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
        inputs = {_literal_relation(lit) for rule in stratum.rules for lit in rule.body}
        return {r for r in inputs if r is not None} - set(stratum.relations)

    def bulk_strata(self, names: Iterable[str]) -> list[_StratumPlans] | None:
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

    def materialize_strata(self, strata: list[_StratumPlans]) -> set[str]:
        """Compute ``strata`` (from :meth:`bulk_strata`) from scratch; their relations."""
        for sp in strata:
            self._materialize(sp, None)
        self.replan(strata)
        return {r for sp in strata for r in sp.stratum.relations}

    def _materialize(self, sp: _StratumPlans, max_iterations: int | None) -> None:
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

        Moved relations get their names and primary indexes back, and indexes built on them
        since the move are dropped (the old plans never read them). Only the old
        materialization is usable after.
        """
        for rel, name, indexes, primary in self._moved.values():
            rel.name = name
            rel.set_primary(primary)
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
            moved[id(rel)] = (rel, rel.name, set(rel.indexes), rel.primary)
            rel.name = new_name
            rel.set_primary(self.primary(new_name))
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
                    moved.setdefault(id(rel), (rel, rel.name, set(rel.indexes), rel.primary))
                    rel.set_primary(self.primary(r))
                    unchanged.add(r)
                continue
            self._materialize(sp, max_iterations)
            unchanged.update(r for r in own if _same_rows(self.relations[r], old.relations.get(r)))
        for sp in self.strata:
            for plan in sp.plans():
                self._prepare_indexes(plan)
        self.replan()
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
        counts = rel.counts  # rows with more than one derivation; other stored rows have one
        # a row losing derivations is stored; only rows gaining some may be new
        gaining = [row for row, weight in acc.items() if weight > 0]
        present = rel.present(gaining) if rel and gaining else EMPTY_ROWS
        added: dict[Row, int] = {}
        removed: list[Row] = []
        for row, weight in acc.items():
            if weight > 0:
                before = counts.get(row, 1) if row in present else 0
            elif weight:
                before = counts.get(row, 1)
            else:
                continue
            after = before + weight
            if after < 0:
                raise AssertionError(f"negative derivation count for {name}{row}")
            if not before:
                added[row] = after
            elif not after:
                removed.append(row)
            elif after == 1:
                del counts[row]
            else:
                counts[row] = after
        rel.remove(removed)
        rel.insert(added)
        counts.update((row, n) for row, n in added.items() if n != 1)
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
                out: set[Row] = set()
                self._run(plan, rows, out, old=True)
                head = plan.rule.head.relation
                fresh = out - doomed[head]
                doomed[head].update(fresh)
                frontier[head].update(fresh)
        if any(frontier.values()):
            # own relations do not change until step 2: their views (and the old versions of
            # the lower strata) are resolved once for all rounds
            ready = self._ready(sp.internal, old=True)
            while any(frontier.values()):
                nxt: dict[str, set[Row]] = {r: set() for r in own}
                for fn, source, head, views in ready:
                    rows = frontier[source]
                    if rows:
                        out = set()
                        fn(rows, out, None, *views)
                        fresh = out - doomed[head]
                        doomed[head].update(fresh)
                        nxt[head].update(fresh)
                frontier = nxt
        # 2. remove
        for r in own:
            self.relations[r].remove(doomed[r])
        # 3. re-derive what still has a derivation, 4. insert, semi-naively
        seeds: dict[str, set[Row]] = {r: set() for r in own}
        for r in own:
            if not doomed[r] or r not in sp.checks:
                continue
            plans = sp.head_bound[r]
            views = [self._view(a, old=False) for plan in plans for a in plan.accesses]
            sp.checks[r](doomed[r], seeds[r], *views)
        for plan in sp.lower:
            delta = deltas.get(_source_relation(plan))
            rows = None if delta is None else delta.minus if _source_negated(plan) else delta.plus
            if rows:
                self._run(plan, rows, seeds[plan.rule.head.relation])
        inserted = self._propagate(sp, seeds)  # updates are never bounded (see Engine)
        for r in own:
            added = inserted[r] - doomed[r]
            removed = doomed[r] - inserted[r]
            if added or removed:
                deltas[r] = Delta(added, removed)

    def _closure(self, sp: _StratumPlans, seeds: dict[str, set[Row]]) -> bool:
        """Evaluate a transitive-closure stratum (:class:`_Closure`) set at a time.

        ``p(x, z)`` holds iff some seed ``p(x, y)`` (a row the non-recursive rules derived)
        reaches ``z`` along the edges. So: the set ``R(y)`` of ids reachable from each distinct
        seed ``y`` (itself included), by breadth-first C-level set unions over the edges
        grouped by source; ``p``'s rows for ``x`` are the union of ``R(y)`` over its seeds,
        and for ``z`` (when ``p`` has an index on that column) the union of the seeds' ``x``
        over the ``y`` reaching ``z``. The relation's index maps are filled with these
        groups directly: no row tuple is built. Returns ``False`` (nothing done) when the
        memoized sets would grow past :data:`CLOSURE_MEMO` ids per seed row (a dense graph
        whose reachable sets are large but shared by few seeds); the caller then runs the
        semi-naive rounds.
        """
        closure = sp.closure
        assert closure is not None
        c = closure.carried
        rows = seeds[closure.relation]
        succ: dict[int, set[int]] = {}
        for name, j in closure.edges:
            idx = self.relations[name].indexes.get((j,))
            if idx is not None and idx.arity == 2:
                for y, group in idx.map.items():
                    found = succ.get(y)
                    if found is None:
                        succ[y] = set(group)
                    else:
                        found.update(group)
            else:
                for row in self.relations[name]:
                    succ.setdefault(row[j], set()).add(row[1 - j])
        # the seeds by x and by y: the index maps of a copied relation when it is the only
        # source of seeds (read, never changed), else sets built from the rows
        copied = [(self.relations[n], xcol) for n, xcol in closure.copies.values()]
        copied = [(source, xcol) for source, xcol in copied if source]
        by_x: dict[int, Any] = {}
        by_y: dict[int, Any] = {}
        if not rows and len(copied) == 1 and copied[0][0].arity == 2:
            source, xcol = copied[0]
            n_seeds = len(source)
            ix, iy = source.indexes.get((xcol,)), source.indexes.get((1 - xcol,))
            if ix is not None:
                by_x = ix.map
            if iy is not None:
                by_y = iy.map
            if ix is None or iy is None:
                have, build = (ix, by_y) if ix is not None else (iy, by_x)
                assert have is not None
                for a, group in have.map.items():
                    for b in group:
                        found_list = build.get(b)
                        if found_list is None:
                            build[b] = [a]
                        else:
                            found_list.append(a)
        else:
            pairs: list[Iterable[tuple[int, int]]] = [map(itemgetter(c, 1 - c), rows)]
            for source, xcol in copied:
                pairs.append(map(itemgetter(xcol, 1 - xcol), source))
            n_seeds = 0
            for x, y in chain.from_iterable(pairs):
                n_seeds += 1
                found = by_x.get(x)
                if found is None:
                    by_x[x] = {y}
                else:
                    found.add(y)
                found = by_y.get(y)
                if found is None:
                    by_y[y] = {x}
                else:
                    found.add(x)
        budget = CLOSURE_MEMO * n_seeds + 4096
        union = set().union
        get = succ.get
        reach: dict[int, set[int]] = {}
        for y in by_y:
            known = {y}
            frontier: set[int] = known
            while frontier:
                frontier = union(*map(get, frontier, repeat(_NO_IDS)))
                frontier -= known
                known |= frontier
            reach[y] = known
            budget -= len(known)
            if budget < 0:
                return False
        rel = self.relations[closure.relation]
        limit = GROUP_LIMIT
        maps: dict[int, dict[Any, Any]] = {}
        for cols, idx in rel.indexes.items():
            maps[cols[0]] = idx.map
        size = 0
        reach_of = reach.__getitem__
        carried_map = maps.get(c)
        groups: dict[int, Any] = {}
        for x, ys in by_x.items():
            g = union(*map(reach_of, ys))
            size += len(g)
            groups[x] = singleton_or_list(g) if len(g) <= limit else g
        if carried_map is not None:
            carried_map.update(groups)
        other = maps.get(1 - c)
        if other is not None:
            reached_by: dict[int, list[int]] = {}
            for y, zs in reach.items():
                for z in zs:
                    found_list = reached_by.get(z)
                    if found_list is None:
                        reached_by[z] = [y]
                    else:
                        found_list.append(y)
            xs_of = by_y.__getitem__
            inverse: dict[int, Any] = {}
            for z, ys_ in reached_by.items():
                g = union(*map(xs_of, ys_))
                inverse[z] = singleton_or_list(g) if len(g) <= limit else g
            other.update(inverse)
        rel.loaded(size)
        if self.cooperative:
            drain(rows)
        return True

    def _fixpoint(
        self, sp: _StratumPlans, seeds: dict[str, set[Row]], max_iterations: int | None
    ) -> dict[str, set[Row]]:
        """Semi-naive evaluation of a :attr:`_StratumPlans.linear` stratum in plain sets.

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
            if max_iterations is not None and rounds > max_iterations:
                names = tuple(r for r in own if not is_internal(r)) or own
                raise IterationLimitError(names, max_iterations)
            for r, rows in frontier.items():
                stored[r] |= rows
            candidates = {r: set() for r in own}
            for plan in sp.internal:
                rows = frontier[_source_relation(plan)]
                if rows:
                    self._run(plan, rows, candidates[plan.rule.head.relation])

    def _propagate(
        self,
        sp: _StratumPlans,
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
            if max_iterations is not None and rounds > max_iterations:
                # the rows just stored are not undone: the caller discards this materialization
                names = tuple(r for r in own if not is_internal(r)) or own
                raise IterationLimitError(names, max_iterations)
            if track:
                for r, rows in frontier.items():
                    inserted[r].update(rows)
            candidates = {r: set() for r in own}
            for fn, source, head, views in ready:
                rows = frontier[source]
                if rows:
                    fn(rows, candidates[head], None, *views)

    def _ready(self, plans: list[Plan], old: bool) -> list[tuple[Any, str, str, list[Any]]]:
        """``(fn, source relation, head relation, views)`` of delta ``plans``."""
        return [
            (
                p.fn,
                _source_relation(p),
                p.rule.head.relation,
                [self._view(a, old) for a in p.accesses],
            )
            for p in plans
        ]

    # -- on-demand relations ---------------------------------------------------------------------

    def demand(
        self, name: str, cols: tuple[int, ...], head: Row | None, exists: bool, run: bool = True
    ) -> Any:
        """Evaluate on-demand relation ``name`` with ``head`` values bound at ``cols``.

        Returns a bool with ``exists``, else the set of matching rows. Without ``run`` it only
        prepares the plans (and returns ``None``).
        """
        key = (name, cols, exists)
        ready = self._demand_plans.get(key)
        if ready is None:
            ready = []
            reads: list[Access] = []
            for plan in self._demand_plans_for(name, cols, exists):
                self._prepare_indexes(plan)
                self._read_by_plans.update(a.relation for a in plan.accesses)
                # on-demand plans always read the current version: views are live, resolve once
                views = tuple(self._view(a, old=False) for a in plan.accesses)
                ready.append((plan.fn, views))
                reads.extend(plan.accesses)
            self._demand_plans[key] = ready
            self._demand_reads[key] = reads
        if not run:
            return None
        if exists:
            return any(fn(None, None, head, *views) for fn, views in ready)
        out: dict[Row, int] = {}
        for fn, views in ready:
            fn(None, out, head, *views)
        return out.keys()

    def prepare_demand(self, name: str, cols: tuple[int, ...], exists: bool) -> None:
        """Compile the plans :meth:`demand` would run for these arguments, and those of the
        on-demand relations they read (as :class:`_DemandView` would at their first use)."""
        todo = [(name, cols, exists)]
        seen = set()
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            self.demand(key[0], key[1], None, key[2], run=False)  # compiled once
            for access in self._demand_reads[key]:
                if not self.is_on_demand(access.relation):
                    continue
                if access.kind == "index":
                    todo.append((access.relation, access.cols, False))
                else:  # a membership test or a scan
                    arity = self.analysis.relations[access.relation].arity
                    todo.append((access.relation, _ALL_COLUMNS[arity], True))
                    todo.append((access.relation, (), False))

    def _demand_plans_for(self, name: str, cols: tuple[int, ...], exists: bool) -> list[Plan]:
        """Plans of on-demand relation ``name``'s rules with ``cols`` bound, ordered by the data.

        Index selection: a stored relation that no compiled plan reads yet (*free*; typically
        one only on-demand rules read) gets the one index that makes these plans cheapest as
        its primary, when that costs at most :data:`SINGLE_INDEX_SLACK` times the plans free to
        use several indexes. Every update maintains every index, so a second index on a large
        relation is paid by the updates (allow's rules would otherwise key ``folder_role`` by
        subject and folder in one rule and by role and folder in the other).
        """
        rules = self.analysis.rules_by_head[name]

        def plan_all(restrict: dict[str, tuple[int, ...]]) -> list[Plan]:
            def primary(rel: str) -> tuple[int, ...] | None:
                return restrict.get(rel) or self.primary(rel)

            def probe(rel: str, bound: tuple[int, ...]) -> tuple[int, ...]:
                only = restrict.get(rel)
                if only is None:
                    return bound
                return only if set(only) <= set(bound) else ()

            return [
                compile_plan(
                    rule,
                    self.dictionary,
                    bound=cols,
                    exists=exists,
                    optimize=self.optimize,
                    primary=primary,
                    estimate=self._estimate if self.optimize else None,
                    probe=probe if restrict else None,
                )
                for rule in rules
            ]

        plans = plan_all({})
        if not self.optimize:
            return plans
        free = {
            a.relation
            for p in plans
            for a in p.accesses
            if a.relation in self.primaries and a.relation not in self._read_by_plans
        }
        chosen: dict[str, tuple[int, ...]] = {}
        for rel in sorted(free):
            options = {a.cols for p in plans for a in p.accesses if a.relation == rel}
            options.discard(())
            if not options:
                continue
            options.add(self.primaries[rel])
            if len(options) == 1:
                continue
            unrestricted = sum(p.cost for p in plans)
            costs = {c: sum(p.cost for p in plan_all({**chosen, rel: c})) for c in options}
            best = min(sorted(costs), key=costs.__getitem__)
            if costs[best] <= SINGLE_INDEX_SLACK * unrestricted + 1:
                chosen[rel] = best
        for rel, cols_ in chosen.items():
            relation = self.relations[rel]
            old = relation.primary
            relation.set_primary(cols_)
            self.primaries[rel] = cols_
            if old is not None and old != cols_:
                del relation.indexes[old]  # no compiled plan reads it (the relation was free)
        return plan_all(chosen) if chosen else plans

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

    # -- reading -----------------------------------------------------------------------------------

    def rows(self, name: str) -> Iterable[Row]:
        if self.is_on_demand(name):
            return self.demand(name, (), None, exists=False)  # type: ignore[no-any-return]
        return self.relations[name]

    def checker(self, name: str) -> Callable[[Any], bool | None] | None:
        """``fn(values)``: whether relation ``name`` holds the tuple of Python ``values``.

        The fast path of ``Engine.contains``: compiled once per relation, it encodes the values
        (known strings and entities only) and runs, on demand, every rule's plan with all
        columns bound, with views resolved once. It returns ``None`` when the values need the
        general path (an unknown or unhashable value, a plain tuple, a wrong length).
        ``None`` for an unknown relation.
        """
        found = self.checkers.get(name)
        if found is not None:
            return found
        namespace: dict[str, Any] = {"IDS": self.dictionary._ids.get}
        if name in self.on_demand:
            arity = self.analysis.relations[name].arity
            self.demand(name, _ALL_COLUMNS[arity], None, exists=True, run=False)
            calls = []
            for i, (fn, views) in enumerate(self._demand_plans[(name, _ALL_COLUMNS[arity], True)]):
                namespace[f"p{i}"] = fn
                namespace.update({f"v{i}_{j}": view for j, view in enumerate(views)})
                args = "".join(f", v{i}_{j}" for j in range(len(views)))
                calls.append(f"p{i}(None, None, row{args})")
            test = " or ".join(calls) or "False"
        elif name in self.relations:
            rel = self.relations[name]
            arity = rel.arity
            namespace["REL"] = rel
            test = "row in REL"
        else:
            return None
        a = [f"a{j}" for j in range(arity)]
        x = [f"x{j}" for j in range(arity)]
        unpack = "".join(f"{v}, " for v in a) + "= values" if arity else "() = values"
        known = " or ".join(f"{v} is None" for v in x) or "False"
        plain = " or ".join(f"type({v}) is tuple" for v in a) or "False"
        src = f"""
def check(values):
    if values.__class__ is not tuple and values.__class__ is not list:
        return None
    try:
        {unpack}
        {"; ".join(f"{xv} = IDS({av})" for xv, av in zip(x, a, strict=True)) or "pass"}
    except (TypeError, ValueError):
        return None
    if {known} or {plain}:
        return None
    row = ({"".join(f"{v}, " for v in x)})
    return bool({test})
"""
        check: Callable[[Any], bool | None] = define(src, "check", f"check {name}", namespace)
        self.checkers[name] = check
        return check

    def contains(self, name: str, row: Row) -> bool:
        if name in self.on_demand:
            return bool(self.demand(name, _ALL_COLUMNS[len(row)], row, exists=True))
        return row in self.relations[name]

    def lookup(self, name: str, cols: tuple[int, ...], row: Row) -> Iterable[Row]:
        """Rows of ``name`` equal to ``row`` at ``cols`` (other positions of ``row`` ignored)."""
        if self.is_on_demand(name):
            return self.demand(name, cols, row, exists=False)  # type: ignore[no-any-return]
        rel = self.relations[name]
        if not cols:
            return rel
        if len(cols) == rel.arity:
            return (row,) if row in rel else EMPTY
        index = rel.index(cols)
        return index.full_rows(index.key(row))

    def user_relations(self) -> Iterator[str]:
        return (name for name in self.relations if not is_internal(name))

    def rules_for(self, name: str) -> list[Rule]:
        return self.analysis.rules_by_head.get(name, [])


_ALL_COLUMNS = [tuple(range(n)) for n in range(MAX_ARITY + 1)]


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
        for col, value in zip(self.cols, unpack(key, len(self.cols)), strict=True):
            head[col] = value
        return tuple(head)

    def get(self, key: Any, default: Any = EMPTY) -> Iterable[Any]:
        """Items (see :mod:`rune.ivm.store`) of the rows whose ``cols`` make ``key``."""
        rows = self.mat.demand(self.name, self.cols, self._head(key), exists=False)
        item = item_function(self.mat.analysis.relations[self.name].arity, self.cols)
        return [item(row) for row in rows]

    def __contains__(self, row: object) -> bool:
        assert isinstance(row, tuple)
        return bool(self.mat.demand(self.name, tuple(range(len(row))), row, exists=True))

    def __iter__(self) -> Iterator[Row]:
        return iter(self.mat.demand(self.name, (), None, exists=False))
