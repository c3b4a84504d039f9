"""Compiled plans of each stratum, and the choice of each relation's primary index.

:class:`StratumPlans` holds what evaluation runs for one stratum: full plans (bulk), delta
plans whose source is a lower stratum (``lower``) or the stratum itself (``internal``), and
for recursive strata the head-bound plans DRed re-derives with, compiled into one check per
relation. Planning only: nothing here reads or stores rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import chain

from rune.ivm.analysis import Analysis, Stratum
from rune.ivm.closure import Closure
from rune.ivm.plan import Plan, compile_checks, compile_plan, no_primary
from rune.ivm.store import Relation
from rune.ivm.syntax import Atom, Comparison, Const, Negation, Rule
from rune.ivm.values import Dictionary

__all__ = [
    "Primary",
    "StratumPlans",
    "choose_primaries",
    "encode_constants",
    "same_rows",
    "source_negated",
    "source_relation",
]


Primary = Callable[[str], "tuple[int, ...] | None"]


class StratumPlans:
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
        self.inputs = {source_relation(p) for p in self.lower}
        # every internal delta plan reads its own stratum only through its delta source: a
        # bulk evaluation can keep the stratum's rows in plain sets and index them once
        self.linear = all(a.relation not in own for p in self.internal for a in p.accesses)
        self.closure = Closure.detect(stratum)
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


def choose_primaries(
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
        plans.extend(StratumPlans(stratum, dictionary, optimize, no_primary).plans())
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


def source_relation(plan: Plan) -> str:
    assert plan.source is not None
    return plan.source_relation


def encode_constants(rule: Rule, dictionary: Dictionary, out: set[int]) -> None:
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


def same_rows(rel: Relation, other: Relation | None) -> bool:
    """Whether two stored relations hold the same rows (counts aside)."""
    if other is None:
        return not rel
    if len(rel) != len(other):
        return False
    return set(rel) == set(other)


def source_negated(plan: Plan) -> bool:
    return plan.source_negated
