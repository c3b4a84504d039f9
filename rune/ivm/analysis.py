"""Analysis: arity, safety, internal rewrites and stratification of a parsed program.

``analyze(program)`` turns a :class:`~rune.ivm.syntax.Program` into an :class:`Analysis`: the
relations with their arity and role, and the materialized strata in evaluation order. Two
rewrites happen here so that later stages only see simple rules:

* a derived relation ``r`` that may also hold asserted facts gets a base relation ``r@base``
  and the rule ``r(X..) :- r@base(X..)``;
* a negated atom with anonymous variables, ``!r(X, _)``, becomes ``!r@p0(X)`` over the
  projection ``r@p0(X) :- r(X, _)``, so that every negated atom is fully bound.

Names containing ``@`` cannot be written in source text, so they never clash with users'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rune.ivm.errors import ArityError, SafetyError, StratificationError
from rune.ivm.syntax import Atom, Comparison, Literal, Negation, Program, Rule, Var

__all__ = [
    "MAX_ARITY",
    "Analysis",
    "RelationSpec",
    "Stratum",
    "analyze",
    "asserted_name",
    "base_name",
    "is_base",
    "is_internal",
]

MAX_ARITY = 64
"""Most arguments a relation may have (plans and checks are compiled per column count)."""


_BASE = "@base"


def base_name(relation: str) -> str:
    """Name of the relation holding asserted facts of derived relation ``relation``."""
    return relation + _BASE


def is_base(relation: str) -> bool:
    """Whether ``relation`` is a :func:`base_name`: it holds a derived relation's facts."""
    return relation.endswith(_BASE)


def asserted_name(base: str) -> str:
    """The derived relation whose asserted facts ``base`` holds (inverse of :func:`base_name`)."""
    return base[: -len(_BASE)]


def is_internal(relation: str) -> bool:
    return "@" in relation


@dataclass(slots=True)
class RelationSpec:
    name: str
    arity: int
    line: int = 0
    column: int = 0
    derived: bool = False
    on_demand: bool = False


@dataclass(frozen=True, slots=True)
class Stratum:
    """Relations of one strongly connected component, maintained together."""

    relations: tuple[str, ...]
    rules: tuple[Rule, ...]
    recursive: bool


@dataclass(slots=True)
class Analysis:
    relations: dict[str, RelationSpec]
    strata: list[Stratum]
    rules_by_head: dict[str, list[Rule]] = field(default_factory=dict)
    source_rules: tuple[Rule, ...] = ()
    origin: dict[Rule, Rule] = field(default_factory=dict)
    """Rewritten rule -> the rule as written (for explanations)."""

    def storage_for_facts(self, relation: str) -> str:
        """Where asserted facts of ``relation`` live: itself, or ``relation@base``."""
        spec = self.relations.get(relation)
        return base_name(relation) if spec is not None and spec.derived else relation


def analyze(program: Program, on_demand: Iterable[str] = ()) -> Analysis:
    relations = _check_arity(program)
    for rule in program.rules:
        _check_safety(rule)
    derived = {r.head.relation for r in program.rules}
    for name in derived:
        relations[name].derived = True

    demand = {d.relation: (d.line, d.column) for d in program.on_demand}
    for name in on_demand:
        demand.setdefault(name, (0, 0))

    rules = list(program.rules)
    rules.extend(_base_rules(relations, derived))
    origin: dict[Rule, Rule] = {}
    rules = _rewrite_negated_projections(rules, relations, origin)

    by_head: dict[str, list[Rule]] = {}
    for rule in rules:
        by_head.setdefault(rule.head.relation, []).append(rule)

    components = _strongly_connected(by_head)
    component_of = {rel: i for i, comp in enumerate(components) for rel in comp}
    _check_negation(components, component_of, by_head)
    _check_on_demand(demand, relations, by_head, components, component_of)

    strata: list[Stratum] = []
    for comp in components:
        if not any(rel in by_head for rel in comp) or any(relations[r].on_demand for r in comp):
            continue
        comp_rules = tuple(rule for rel in comp for rule in by_head.get(rel, ()))
        recursive = len(comp) > 1 or any(
            lit.relation == comp[0] for rule in comp_rules for lit in _atoms(rule.body)
        )
        strata.append(Stratum(tuple(comp), comp_rules, recursive))
    return Analysis(relations, strata, by_head, program.rules, origin)


# -- arity and safety ------------------------------------------------------------------------


def _check_arity(program: Program) -> dict[str, RelationSpec]:
    relations: dict[str, RelationSpec] = {}

    def use(atom: Atom) -> None:
        if len(atom.args) > MAX_ARITY:
            raise ArityError(
                f"relation {atom.relation} has {len(atom.args)} arguments, more than the limit "
                f"of {MAX_ARITY}",
                atom.line,
                atom.column,
                str(atom),
            )
        spec = relations.get(atom.relation)
        if spec is None:
            relations[atom.relation] = RelationSpec(
                atom.relation, len(atom.args), atom.line, atom.column
            )
        elif spec.arity != len(atom.args):
            raise ArityError(
                f"relation {atom.relation} used with {len(atom.args)} argument(s) here but "
                f"with {spec.arity} at {spec.line}:{spec.column}",
                atom.line,
                atom.column,
                str(atom),
            )

    for rule in program.rules:
        use(rule.head)
        for lit in rule.body:
            if isinstance(lit, Atom):
                use(lit)
            elif isinstance(lit, Negation):
                use(lit.atom)
    return relations


def _check_safety(rule: Rule) -> None:
    bound = {v.name for lit in rule.body if isinstance(lit, Atom) for v in lit.variables}

    def require(var: Var, where: str, line: int, column: int, anonymous_ok: bool) -> None:
        if var.anonymous:
            if anonymous_ok:
                return
            raise SafetyError(f"anonymous variable '_' is not allowed in {where}", line, column)
        if var.name not in bound:
            raise SafetyError(
                f"unsafe rule: variable {var.name} in {where} does not appear in a positive "
                "body atom",
                line,
                column,
                var.name,
            )

    head = rule.head
    if rule.is_fact and head.variables:
        raise SafetyError(
            f"fact {head} contains variable {head.variables[0]}; facts must be ground",
            head.line,
            head.column,
            str(head),
        )
    for var in head.variables:
        require(var, f"the head {head}", head.line, head.column, anonymous_ok=False)
    for lit in rule.body:
        if isinstance(lit, Negation):
            for var in lit.atom.variables:
                require(var, f"the negated atom {lit}", lit.line, lit.column, anonymous_ok=True)
        elif isinstance(lit, Comparison):
            for var in lit.variables:
                require(var, f"the comparison {lit}", lit.line, lit.column, anonymous_ok=False)


# -- rewrites --------------------------------------------------------------------------------


def _base_rules(relations: dict[str, RelationSpec], derived: set[str]) -> list[Rule]:
    out = []
    for name in sorted(derived):
        spec = relations[name]
        variables = tuple(Var(f"V{i}") for i in range(spec.arity))
        base = base_name(name)
        relations[base] = RelationSpec(base, spec.arity, spec.line, spec.column)
        out.append(Rule(Atom(name, variables), (Atom(base, variables),), spec.line, spec.column))
    return out


def _rewrite_negated_projections(
    rules: list[Rule], relations: dict[str, RelationSpec], origin: dict[Rule, Rule]
) -> list[Rule]:
    extra: dict[str, Rule] = {}
    out = []
    for rule in rules:
        body: list[Literal] = []
        for lit in rule.body:
            if isinstance(lit, Negation) and any(v.anonymous for v in lit.atom.variables):
                atom = lit.atom
                keep = [
                    i for i, a in enumerate(atom.args) if not (isinstance(a, Var) and a.anonymous)
                ]
                name = f"{atom.relation}@p{'_'.join(map(str, keep))}"
                if name not in extra:
                    variables = tuple(Var(f"V{i}") for i in range(len(atom.args)))
                    head = Atom(name, tuple(variables[i] for i in keep))
                    extra[name] = Rule(
                        head, (Atom(atom.relation, variables),), lit.line, lit.column
                    )
                    relations[name] = RelationSpec(
                        name, len(keep), lit.line, lit.column, derived=True
                    )
                projected = Atom(name, tuple(atom.args[i] for i in keep), atom.line, atom.column)
                body.append(Negation(projected, lit.line, lit.column))
            else:
                body.append(lit)
        rewritten = Rule(rule.head, tuple(body), rule.line, rule.column)
        if rewritten != rule:
            origin[rewritten] = rule
        out.append(rewritten)
    return out + list(extra.values())


# -- dependency graph --------------------------------------------------------------------------


def _atoms(body: Iterable[Literal]) -> Iterable[Atom]:
    for lit in body:
        if isinstance(lit, Atom):
            yield lit
        elif isinstance(lit, Negation):
            yield lit.atom


def _strongly_connected(by_head: dict[str, list[Rule]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components come out dependencies first."""
    graph: dict[str, list[str]] = {}
    for head, rules in by_head.items():
        deps = graph.setdefault(head, [])
        for rule in rules:
            for atom in _atoms(rule.body):
                deps.append(atom.relation)
                graph.setdefault(atom.relation, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            deps = graph[node]
            if i < len(deps):
                work.append((node, i + 1))
                dep = deps[i]
                if dep not in index:
                    work.append((dep, 0))
                elif dep in on_stack:
                    low[node] = min(low[node], index[dep])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                out.append(sorted(comp))
    return out


def _check_negation(
    components: list[list[str]], component_of: dict[str, int], by_head: dict[str, list[Rule]]
) -> None:
    for head, rules in by_head.items():
        for rule in rules:
            for lit in rule.body:
                if (
                    isinstance(lit, Negation)
                    and component_of[lit.atom.relation] == component_of[head]
                ):
                    cycle = _cycle(
                        lit.atom.relation, head, by_head, set(components[component_of[head]])
                    )
                    other = lit.atom.relation
                    via = "itself" if other == head else f"{other}, which depends on {head}"
                    raise StratificationError(
                        f"program is not stratifiable: {head} depends negatively on {via} "
                        f"(cycle: {' -> '.join(cycle)})",
                        lit.line,
                        lit.column,
                        str(lit),
                    )


def _cycle(start: str, goal: str, by_head: dict[str, list[Rule]], scope: set[str]) -> list[str]:
    """A dependency path ``goal -> !start -> ... -> goal`` inside one component."""
    previous: dict[str, str] = {start: start}
    frontier = [start]
    while frontier and goal not in previous:
        nxt = []
        for rel in frontier:
            for rule in by_head.get(rel, ()):
                for atom in _atoms(rule.body):
                    if atom.relation in scope and atom.relation not in previous:
                        previous[atom.relation] = rel
                        nxt.append(atom.relation)
        frontier = nxt
    path = [goal]
    node = goal
    while node != start:
        node = previous[node]
        path.append(node)
    path.reverse()  # start -> ... -> goal
    return [goal, f"!{start}", *path[1:]]


def _check_on_demand(
    demand: dict[str, tuple[int, int]],
    relations: dict[str, RelationSpec],
    by_head: dict[str, list[Rule]],
    components: list[list[str]],
    component_of: dict[str, int],
) -> None:
    for head, rules in by_head.items():  # projections of on-demand relations are on demand
        if "@p" in head and rules[0].body[0].relation in demand:  # type: ignore[union-attr]
            demand[head] = (rules[0].line, rules[0].column)
    for name, (line, column) in demand.items():
        if name not in by_head or (is_internal(name) and "@p" not in name):
            raise StratificationError(f"on_demand relation {name} has no rules", line, column, name)
        recursive = len(components[component_of[name]]) > 1 or any(
            atom.relation == name for rule in by_head[name] for atom in _atoms(rule.body)
        )
        if recursive:
            raise StratificationError(
                f"on_demand relation {name} is recursive; only non-recursive relations can be "
                "computed on demand",
                line,
                column,
                name,
            )
        relations[name].on_demand = True
    for head, rules in by_head.items():
        if relations[head].on_demand:
            continue
        for rule in rules:
            for atom in _atoms(rule.body):
                if relations[atom.relation].on_demand:
                    raise StratificationError(
                        f"materialized relation {head} depends on on_demand relation "
                        f"{atom.relation}; declare {head} on_demand too",
                        atom.line,
                        atom.column,
                        str(atom),
                    )
