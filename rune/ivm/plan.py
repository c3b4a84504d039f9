"""Join plans: choose an evaluation order for a rule body and compile it to Python.

A :class:`Plan` evaluates one rule in one *mode*:

* full (``source=None``): every satisfying assignment of the body;
* delta (``source=k``): only assignments whose literal ``k`` matches a row of a given delta;
* head-bound (``bound=cols``): only assignments whose head agrees with given values in
  ``cols`` (goal-directed: re-derivation checks, on-demand lookups).

The order is greedy: filters (negations, comparisons, fully bound atoms) as soon as their
variables are bound, then the atom with the most bound arguments (or, given statistics of the
data, as on-demand plans compiled at their first use are, the fewest expected rows), probed
through the index on exactly those columns. With ``optimize=False`` the positive atoms are
taken in the order the rule body is written instead (filters are still placed as soon as
their variables are bound, so every plan stays safe); results are the same, only the cost
differs. The chosen order is compiled to a nested-loop Python function, which is several times
faster than interpreting the plan (no per-tuple dispatch, locals only); an index probe whose
key is bound outside the innermost loop around it is hoisted out of that loop.

Compiled function signature: ``fn(SRC, OUT, HEAD, *views)`` where ``SRC`` maps delta rows to
weights, ``OUT`` receives ``head_row -> summed weight``, ``HEAD`` holds the bound head values,
and ``views`` are supplied by the caller for each entry of ``Plan.accesses``: an index-like
object with ``get(key, default)`` for ``"index"`` (a key as :func:`index.key_code` builds it,
a group of items as :mod:`rune.ivm.index` describes), or a container of rows for ``"rows"``.
In ``exists`` mode the function returns ``True`` at the first assignment instead of writing
``OUT``.

Membership tests of a fully bound atom read the relation's *primary* index (``primary``
gives its columns, ``None`` for relations kept as a set of rows: arity below 2, on-demand):
``if item in V.get(key, EMPTY)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rune.ivm.codegen import Writer, define
from rune.ivm.index import EMPTY, item_code, key_code
from rune.ivm.syntax import Atom, Comparison, Const, Negation, Rule, Term
from rune.ivm.values import Dictionary, Value

__all__ = ["Access", "Plan", "compile_checks", "compile_plan", "no_primary"]


@dataclass(frozen=True, slots=True)
class Access:
    """How a plan reads body literal ``literal``: by ``index`` on ``cols`` or as ``rows``."""

    literal: int
    relation: str
    kind: str  # "index" | "rows"
    cols: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    rule: Rule
    source: int | None
    bound: tuple[int, ...]
    accesses: tuple[Access, ...]
    fn: Callable[..., Any]
    code: str
    collect: bool = False
    cost: float = 0.0
    body: tuple[str, ...] = ()
    """The lines of ``fn`` after its prologue, for :func:`compile_checks` (exists mode)."""
    source_relation: str = ""
    """The relation of the delta source literal (delta plans)."""
    source_negated: bool = False
    """Whether the delta source literal is negated."""


def _ordered(a: Value, b: Value) -> tuple[Value, Value] | None:
    ta = type(a)
    if ta is type(b) and (ta is int or ta is str):
        return a, b
    return None


def _lt(a: Value, b: Value) -> bool:
    p = _ordered(a, b)
    return p is not None and p[0] < p[1]  # type: ignore[operator]


def _le(a: Value, b: Value) -> bool:
    p = _ordered(a, b)
    return p is not None and p[0] <= p[1]  # type: ignore[operator]


_ORDER_FUNCTIONS = {
    "<": ("_lt", False),
    "<=": ("_le", False),
    ">": ("_lt", True),
    ">=": ("_le", True),
}


def no_primary(relation: str) -> tuple[int, ...] | None:
    """The ``primary`` of plans compiled before primaries are chosen: none."""
    return None


# one pass over the rule body emitting code: its branches are the kinds of literal and access
def compile_plan(  # noqa: C901, PLR0913
    rule: Rule,
    dictionary: Dictionary,
    *,
    source: int | None = None,
    bound: tuple[int, ...] = (),
    exists: bool = False,
    collect: bool = False,
    optimize: bool = True,
    primary: Callable[[str], tuple[int, ...] | None] = no_primary,
    estimate: Callable[[str, tuple[int, ...]], float] | None = None,
    probe: Callable[[str, tuple[int, ...]], tuple[int, ...]] | None = None,
) -> Plan:
    """Compile ``rule`` for one mode (see the module docstring).

    ``optimize`` picks the next positive atom greedily (most bound arguments); without it the
    next one is the first remaining in the body's written order. With ``estimate`` (expected
    rows of a relation for given bound columns, from the data) ``optimize`` picks the atom with
    the fewest expected rows first, then the most bound arguments, and the plan's ``cost`` is
    its expected number of loop iterations and probes. ``probe`` restricts the index an atom
    with given bound columns is read through (a subset of them; the others are compared, and
    ``()`` scans the relation); by default, exactly the bound columns. ``primary`` names the
    primary index columns of a stored relation (membership tests probe it). ``collect``:
    weights are not needed (semi-naive rounds, DRed): ``SRC`` is any iterable of rows and
    ``OUT`` a set that receives the head rows.
    """
    names: dict[str, str] = {}
    bound_vars: set[str] = set()
    out = Writer()
    accesses: list[Access] = []

    def var(name: str) -> str:
        if name not in names:
            names[name] = f"v{len(names)}"
        return names[name]

    def term(t: Term) -> str:
        if isinstance(t, Const):
            return str(dictionary.encode(t.value))
        return var(t.name)

    def loop_over(atom: Atom, iterable: str, skip: tuple[int, ...], weighted: bool = False) -> None:
        """Loop over rows (``skip`` empty) or items of an index on ``skip`` of ``atom``.

        The loop target unpacks them: fresh variables are bound there, positions holding a
        constant or an already bound variable go to temporaries compared right after.
        """
        rest = [p for p in range(len(atom.args)) if p not in skip]
        names: list[str] = []
        checks: list[str] = []
        fresh: list[str] = []
        for pos in rest:
            arg = atom.args[pos]
            if isinstance(arg, Const) or (not arg.anonymous and arg.name in bound_vars):
                temp = f"c{pos}_{len(out.lines)}"
                names.append(temp)
                checks.append(f"{temp} == {term(arg)}")
            elif arg.anonymous:
                names.append("_")
            else:
                names.append(var(arg.name))
                fresh.append(var(arg.name))
                bound_vars.add(arg.name)
        if skip and len(rest) == 1:
            target = names[0]  # an item of one column is the id itself
        else:
            target = "(" + "".join(f"{n}, " for n in names) + ")"
        out.loop(f"{target}, w" if weighted else target, iterable, fresh)
        for check in checks:
            out.open(f"if {check}:")

    def key_vars(atom: Atom, cols: tuple[int, ...]) -> list[str]:
        out_vars = []
        for c in cols:
            arg = atom.args[c]
            if not isinstance(arg, Const):
                out_vars.append(var(arg.name))
        return out_vars

    def member(k: int, atom: Atom, negated: bool) -> None:
        """A test that the fully bound ``atom`` (literal ``k``) holds (or not)."""
        cols = primary(atom.relation)
        test = "not in" if negated else "in"
        if cols is None:
            accesses.append(Access(k, atom.relation, "rows"))
            out.open(f"if {row_expr(atom)} {test} V{len(accesses) - 1}:")
            return
        accesses.append(Access(k, atom.relation, "index", cols))
        key = key_code([term(atom.args[c]) for c in cols])
        rest = [term(a) for p, a in enumerate(atom.args) if p not in cols]
        group = out.probe(f"G{len(accesses) - 1}({key}, EMPTY)", key_vars(atom, cols))
        out.open(f"if {item_code(rest)} {test} {group}:")

    def is_bound(t: Term) -> bool:
        return isinstance(t, Const) or (not t.anonymous and t.name in bound_vars)

    def row_expr(atom: Atom) -> str:
        parts = [term(a) for a in atom.args]
        return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"

    # 1. initial bindings: from the bound head columns, then from the delta source
    head = rule.head
    for pos in bound:
        arg = head.args[pos]
        if isinstance(arg, Const) or arg.name in bound_vars:
            out.open(f"if HEAD[{pos}] == {term(arg)}:")
        else:
            out.bind(var(arg.name), f"{var(arg.name)} = HEAD[{pos}]")
            bound_vars.add(arg.name)
    weight = "1"
    remaining = list(range(len(rule.body)))
    if source is not None:
        lit = rule.body[source]
        atom = lit.atom if isinstance(lit, Negation) else lit
        assert isinstance(atom, Atom)
        loop_over(atom, "SRC" if collect else "SRC.items()", (), weighted=not collect)
        weight = "-w" if isinstance(lit, Negation) else "w"
        remaining.remove(source)

    # 2. the rest of the body: filters as soon as possible, then the next positive atom
    loops = 1.0  # expected iterations of the innermost loop so far (with ``estimate``)
    cost = 0.0
    while remaining:
        progressed = True
        while progressed:
            progressed = False
            for k in list(remaining):
                lit = rule.body[k]
                if isinstance(lit, Comparison) and all(is_bound(t) for t in (lit.left, lit.right)):
                    out.open(f"if {_comparison(lit, term)}:")
                elif isinstance(lit, Negation) and all(is_bound(t) for t in lit.atom.args):
                    member(k, lit.atom, negated=True)
                    cost += loops
                elif isinstance(lit, Atom) and all(is_bound(t) for t in lit.args):
                    member(k, lit, negated=False)
                    cost += loops
                else:
                    continue
                remaining.remove(k)
                progressed = True
        if not remaining:
            break
        candidates = [k for k in remaining if isinstance(rule.body[k], Atom)]
        if not candidates:  # safety analysis guarantees this cannot happen
            raise AssertionError(f"no positive atom left to bind {rule}")

        def probe_cols(atom: Atom) -> tuple[int, ...]:
            cols = tuple(p for p, a in enumerate(atom.args) if is_bound(a))
            return probe(atom.relation, cols) if probe is not None else cols

        def score(k: int) -> tuple[float, int, int]:
            candidate = rule.body[k]
            assert isinstance(candidate, Atom)
            cols = probe_cols(candidate)
            rows = estimate(candidate.relation, cols) if estimate is not None else 0.0
            return (-rows, len(cols), -k)

        k = max(candidates, key=score) if optimize else candidates[0]
        chosen = rule.body[k]
        assert isinstance(chosen, Atom)
        remaining.remove(k)
        cols = probe_cols(chosen)
        if estimate is not None:
            loops *= estimate(chosen.relation, cols)
            cost += loops
        if cols:
            accesses.append(Access(k, chosen.relation, "index", cols))
            key = key_code([term(chosen.args[c]) for c in cols])
            group = out.probe(f"G{len(accesses) - 1}({key}, EMPTY)", key_vars(chosen, cols))
            loop_over(chosen, group, cols)
        else:
            accesses.append(Access(k, chosen.relation, "rows"))
            loop_over(chosen, f"V{len(accesses) - 1}", ())

    # 3. emit
    h = row_expr(head) if head.args else "()"
    if exists:
        out.line("return True")
    elif collect:
        out.line(f"add({h})")
    else:
        out.line(f"h = {h}")
        out.line(f"OUT[h] = get(h, 0) + {weight}")
    # bound methods in locals: one attribute lookup per call instead of one per row
    prologue = [f"    G{i} = V{i}.get" for i, a in enumerate(accesses) if a.kind == "index"]
    if not exists:
        prologue.append("    add = OUT.add" if collect else "    get = OUT.get")
    views = "".join(f", V{i}" for i in range(len(accesses)))
    tail = "    return False\n" if exists else ""
    body = "\n".join(prologue + out.lines) if out.lines else "    pass"
    code = f"def plan(SRC, OUT, HEAD{views}):\n" + body + "\n" + tail
    namespace: dict[str, Any] = {"EMPTY": EMPTY, "VAL": dictionary.values, "_lt": _lt, "_le": _le}
    fn = define(code, "plan", f"plan {rule.head.relation}:{rule.line}", namespace)
    src_rel, src_neg = "", False
    if source is not None:
        lit = rule.body[source]
        src_neg = isinstance(lit, Negation)
        atom = lit.atom if isinstance(lit, Negation) else lit
        assert isinstance(atom, Atom)
        src_rel = atom.relation
    return Plan(
        rule,
        source,
        bound,
        tuple(accesses),
        fn,
        code,
        collect,
        cost,
        tuple(out.lines),
        src_rel,
        src_neg,
    )


_VIEW_NAME = re.compile(r"\b([GV])(\d+)\b")


def compile_checks(plans: list[Plan], dictionary: Dictionary) -> Callable[..., None]:
    """One function checking many head rows against several exists-mode ``plans``.

    ``fn(ROWS, FOUND, *views)`` adds to ``FOUND`` each row of ``ROWS`` for which one of the
    plans (tried in order) finds an assignment; ``views`` are those of every plan's
    accesses, plan after plan. The plans' bodies are inlined in one loop over the rows
    (DRed's re-derivation checks each over-deleted row: one call per row instead of one
    per row and plan): ``return True`` becomes adding the row and going on with the next,
    out of nested loops through a flag.
    """
    params: list[str] = []
    prologue: list[str] = []
    lines: list[str] = []
    for k, plan in enumerate(plans):

        def rename(text: str, k: int = k) -> str:
            return _VIEW_NAME.sub(lambda m: f"{m.group(1)}{k}_{m.group(2)}", text)

        for i, access in enumerate(plan.accesses):
            params.append(f"V{k}_{i}")
            if access.kind == "index":
                prologue.append(f"    G{k}_{i} = V{k}_{i}.get")
        body = [rename(line) for line in plan.body]
        loops = [j for j, line in enumerate(body) if line.lstrip().startswith("for ")]
        if loops:
            lines.append("        found = False")
        for line in body:
            pad = "    " + line[: len(line) - len(line.lstrip())]
            if line.strip() == "return True":
                lines.append(pad + "add(HEAD)")
                lines.append(pad + ("found = True" if loops else "continue"))
                if loops:
                    lines.append(pad + "break")
            else:
                lines.append("    " + line)
        for j in reversed(loops):
            pad = "    " + body[j][: len(body[j]) - len(body[j].lstrip())]
            lines.append(pad + ("if found:"))
            lines.append(pad + ("    continue" if j == loops[0] else "    break"))
    code = (
        f"def checks(ROWS, FOUND{''.join(f', {v}' for v in params)}):\n"
        + "\n".join(
            [*prologue, "    add = FOUND.add", "    for HEAD in ROWS:", *lines, "        pass"]
        )
        + "\n"
    )
    namespace: dict[str, Any] = {"EMPTY": EMPTY, "VAL": dictionary.values, "_lt": _lt, "_le": _le}
    name = plans[0].rule.head.relation if plans else "-"
    checks: Callable[..., None] = define(code, "checks", f"checks {name}", namespace)
    return checks


def _comparison(lit: Comparison, term: Callable[[Term], str]) -> str:
    left, right = term(lit.left), term(lit.right)
    if lit.op == "=":
        return f"{left} == {right}"
    if lit.op == "!=":
        return f"{left} != {right}"
    fn, swap = _ORDER_FUNCTIONS[lit.op]
    a, b = (right, left) if swap else (left, right)
    return f"{fn}(VAL[{a}], VAL[{b}])"
