"""Join plans: choose an evaluation order for a rule body and compile it to Python.

A :class:`Plan` evaluates one rule in one *mode*:

* full (``source=None``): every satisfying assignment of the body;
* delta (``source=k``): only assignments whose literal ``k`` matches a row of a given delta;
* head-bound (``bound=cols``): only assignments whose head agrees with given values in
  ``cols`` (goal-directed: re-derivation checks, on-demand lookups).

The order is greedy: filters (negations, comparisons, fully bound atoms) as soon as their
variables are bound, then the atom with the most bound arguments, probed through the index on
exactly those columns. With ``optimize=False`` the positive atoms are taken in the order the
rule body is written instead (filters are still placed as soon as their variables are bound,
so every plan stays safe); results are the same, only the cost differs. The chosen order is
compiled to a nested-loop Python function, which is several times faster than interpreting
the plan (no per-tuple dispatch, locals only).

Compiled function signature: ``fn(SRC, OUT, HEAD, *views)`` where ``SRC`` maps delta rows to
weights, ``OUT`` receives ``head_row -> summed weight``, ``HEAD`` holds the bound head values,
and ``views`` are supplied by the caller for each entry of ``Plan.accesses``: an index-like
object with ``get(key, default)`` for ``"index"``, or a container of rows for ``"rows"``. In
``exists`` mode the function returns ``True`` at the first assignment instead of writing
``OUT``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rune.ivm.store import EMPTY
from rune.ivm.syntax import Atom, Comparison, Const, Negation, Rule, Term
from rune.ivm.values import Dictionary, Value

__all__ = ["Access", "Plan", "compile_plan"]


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


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def open(self, text: str) -> None:
        self.line(text)
        self.depth += 1


def compile_plan(
    rule: Rule,
    dictionary: Dictionary,
    *,
    source: int | None = None,
    bound: tuple[int, ...] = (),
    exists: bool = False,
    optimize: bool = True,
) -> Plan:
    """Compile ``rule`` for one mode (see the module docstring).

    ``optimize`` picks the next positive atom greedily (most bound arguments); without it the
    next one is the first remaining in the body's written order.
    """
    names: dict[str, str] = {}
    bound_vars: set[str] = set()
    out = _Writer()
    accesses: list[Access] = []

    def var(name: str) -> str:
        if name not in names:
            names[name] = f"v{len(names)}"
        return names[name]

    def term(t: Term) -> str:
        if isinstance(t, Const):
            return str(dictionary.encode(t.value))
        return var(t.name)

    def bind_row(atom: Atom, row: str, skip: set[int]) -> None:
        """Bind/check the positions of ``atom`` read from ``row`` (``skip``: already keyed)."""
        for pos, arg in enumerate(atom.args):
            if pos in skip:
                continue
            if isinstance(arg, Const):
                out.open(f"if {row}[{pos}] == {term(arg)}:")
            elif arg.anonymous:
                continue
            elif arg.name in bound_vars:
                out.open(f"if {row}[{pos}] == {var(arg.name)}:")
            else:
                out.line(f"{var(arg.name)} = {row}[{pos}]")
                bound_vars.add(arg.name)

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
            out.line(f"{var(arg.name)} = HEAD[{pos}]")
            bound_vars.add(arg.name)
    weight = "1"
    remaining = list(range(len(rule.body)))
    if source is not None:
        lit = rule.body[source]
        atom = lit.atom if isinstance(lit, Negation) else lit
        assert isinstance(atom, Atom)
        out.open("for s, w in SRC.items():")
        bind_row(atom, "s", set())
        weight = "-w" if isinstance(lit, Negation) else "w"
        remaining.remove(source)

    # 2. the rest of the body: filters as soon as possible, then the next positive atom
    while remaining:
        progressed = True
        while progressed:
            progressed = False
            for k in list(remaining):
                lit = rule.body[k]
                if isinstance(lit, Comparison) and all(is_bound(t) for t in (lit.left, lit.right)):
                    out.open(f"if {_comparison(lit, term)}:")
                elif isinstance(lit, Negation) and all(is_bound(t) for t in lit.atom.args):
                    accesses.append(Access(k, lit.atom.relation, "rows"))
                    out.open(f"if {row_expr(lit.atom)} not in V{len(accesses) - 1}:")
                elif isinstance(lit, Atom) and all(is_bound(t) for t in lit.args):
                    accesses.append(Access(k, lit.relation, "rows"))
                    out.open(f"if {row_expr(lit)} in V{len(accesses) - 1}:")
                else:
                    continue
                remaining.remove(k)
                progressed = True
        if not remaining:
            break
        candidates = [k for k in remaining if isinstance(rule.body[k], Atom)]
        if not candidates:  # safety analysis guarantees this cannot happen
            raise AssertionError(f"no positive atom left to bind {rule}")

        def score(k: int) -> tuple[int, int]:
            candidate = rule.body[k]
            assert isinstance(candidate, Atom)
            return (sum(1 for a in candidate.args if is_bound(a)), -k)

        k = max(candidates, key=score) if optimize else candidates[0]
        chosen = rule.body[k]
        assert isinstance(chosen, Atom)
        remaining.remove(k)
        cols = tuple(p for p, a in enumerate(chosen.args) if is_bound(a))
        row = f"t{k}"
        if cols:
            accesses.append(Access(k, chosen.relation, "index", cols))
            key = (
                term(chosen.args[cols[0]])
                if len(cols) == 1
                else "(" + ", ".join(term(chosen.args[c]) for c in cols) + ")"
            )
            out.open(f"for {row} in V{len(accesses) - 1}.get({key}, EMPTY):")
        else:
            accesses.append(Access(k, chosen.relation, "rows"))
            out.open(f"for {row} in V{len(accesses) - 1}:")
        bind_row(chosen, row, set(cols))

    # 3. emit
    if exists:
        out.line("return True")
    else:
        out.line(f"h = {row_expr(head) if head.args else '()'}")
        out.line(f"OUT[h] = OUT.get(h, 0) + {weight}")
    views = "".join(f", V{i}" for i in range(len(accesses)))
    tail = "    return False\n" if exists else ""
    code = f"def plan(SRC, OUT, HEAD{views}):\n" + "\n".join(out.lines) + "\n" + tail
    if not out.lines:
        code = f"def plan(SRC, OUT, HEAD{views}):\n    pass\n" + tail
    namespace: dict[str, Any] = {"EMPTY": EMPTY, "VAL": dictionary.values, "_lt": _lt, "_le": _le}
    exec(compile(code, f"<plan {rule.head.relation}:{rule.line}>", "exec"), namespace)
    return Plan(rule, source, bound, tuple(accesses), namespace["plan"], code)


def _comparison(lit: Comparison, term: Callable[[Term], str]) -> str:
    left, right = term(lit.left), term(lit.right)
    if lit.op == "=":
        return f"{left} == {right}"
    if lit.op == "!=":
        return f"{left} != {right}"
    fn, swap = _ORDER_FUNCTIONS[lit.op]
    a, b = (right, left) if swap else (left, right)
    return f"{fn}(VAL[{a}], VAL[{b}])"
