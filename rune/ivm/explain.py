"""Explanations: why a tuple is in a relation, or why it is not.

For a present tuple, :func:`explain` returns a :class:`Derivation`: one well-founded
derivation tree (a rule instance whose positive body tuples are explained in turn, never
through a tuple already on the path, so recursion always bottoms out in asserted or program
facts). For an absent tuple it returns an :class:`Absence`: every rule for the relation with
the first body literal (in source order, a comparison or negated atom taken as soon as the
atoms binding its variables are) at which no assignment survived.

This is a diagnostic path, not a hot one: it interprets rules instead of running compiled
plans, and bounds its search (``MAX_STEPS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rune.ivm.analysis import is_base
from rune.ivm.errors import DatalogError
from rune.ivm.index import Row
from rune.ivm.syntax import Atom, Comparison, Const, Literal, Negation, Rule, Term, Var
from rune.ivm.values import Value, render_value

if TYPE_CHECKING:
    from rune.ivm.evaluate import Materialization

__all__ = ["Absence", "Attempt", "Derivation", "explain"]

MAX_STEPS = 200_000
"""Upper bound on rule instances examined for one explanation."""

MAX_BINDINGS = 10_000
"""Upper bound on partial assignments kept when locating a failed literal."""

MAX_TRIED = 5
"""How many of the assignments that reached a failed literal an :class:`Attempt` shows."""


def _render_tuple(relation: str, values: tuple[Value, ...]) -> str:
    return f"{relation}({', '.join(render_value(v) for v in values)})"


@dataclass(frozen=True, slots=True)
class Derivation:
    """``relation(values)`` holds: asserted (``rule is None``) or by ``rule`` from ``children``."""

    relation: str
    values: tuple[Value, ...]
    rule: str | None = None
    line: int = 0
    column: int = 0
    children: tuple[Derivation, ...] = ()
    absent: tuple[str, ...] = ()  # negated atoms, rendered, that were checked absent
    present: bool = field(default=True, init=False)

    def render(self) -> str:
        lines: list[str] = []
        self._render(lines, 0)
        return "\n".join(lines) + "\n"

    def _render(self, lines: list[str], depth: int) -> None:
        pad = "  " * depth
        head = _render_tuple(self.relation, self.values)
        if self.rule is None:
            lines.append(f"{pad}{head}  <- asserted fact")
            return
        kind = "rule" if ":-" in self.rule else "program fact"
        where = f"{kind} at {self.line}:{self.column}" if self.line else kind
        lines.append(f"{pad}{head}  <- {where}: {self.rule}")
        for child in self.children:
            child._render(lines, depth + 1)  # noqa: SLF001 (a child of the same class)
        for neg in self.absent:
            lines.append(f"{pad}  {neg}  (absent)")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "relation": self.relation,
            "tuple": [_json_value(v) for v in self.values],
        }
        if self.rule is None:
            out["asserted"] = True
        else:
            out["rule"] = self.rule
            out["line"] = self.line
            out["column"] = self.column
            out["children"] = [c.to_json() for c in self.children]
            if self.absent:
                out["absent"] = list(self.absent)
        return out


@dataclass(frozen=True, slots=True)
class Attempt:
    """One rule tried for an absent tuple and where it failed."""

    rule: str
    line: int
    column: int
    failed: str  # the literal (or "head") that no assignment got past
    literal_index: int  # -1 for the head
    reason: str
    tried: tuple[str, ...] = ()
    """The failed literal under the first assignments that reached it (at most
    :data:`MAX_TRIED`; empty when the head binds all its variables: ``failed`` says it all)."""
    tried_total: int = 0
    """How many assignments reached the failed literal (all of them failed there)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "line": self.line,
            "column": self.column,
            "failed": self.failed,
            "literal_index": self.literal_index,
            "reason": self.reason,
        }
        if self.tried:
            out["tried"] = list(self.tried)
            out["tried_total"] = self.tried_total
        return out


@dataclass(frozen=True, slots=True)
class Absence:
    """``relation(values)`` does not hold; ``attempts`` says where each rule failed."""

    relation: str
    values: tuple[Value, ...]
    attempts: tuple[Attempt, ...]
    present: bool = field(default=False, init=False)

    def render(self) -> str:
        lines = [f"{_render_tuple(self.relation, self.values)} does not hold"]
        if not self.attempts:
            lines.append("  no rule derives it and it was not asserted")
        for a in self.attempts:
            where = f"rule at {a.line}:{a.column}" if a.line else "rule"
            lines.append(f"  {where}: {a.rule}")
            lines.append(f"    failed at {a.failed}: {a.reason}")
            if a.tried:
                more = a.tried_total - len(a.tried)
                lines.append(f"      tried {a.tried_total} binding(s) of the earlier literals:")
                lines.extend(f"        {t}" for t in a.tried)
                if more > 0:
                    lines.append(f"        ... and {more} more")
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "relation": self.relation,
            "tuple": [_json_value(v) for v in self.values],
            "holds": False,
            "attempts": [a.to_json() for a in self.attempts],
        }


def _json_value(v: Value) -> Any:
    return v if isinstance(v, (str, int, bool)) else v.to_json()


# -- search ------------------------------------------------------------------------------------


class _Budget(DatalogError):
    """The search for an explanation exceeded ``MAX_STEPS``."""


class _Explainer:
    def __init__(self, mat: Materialization, unknown: dict[int, Value]) -> None:
        self.mat = mat
        self.values = mat.dictionary.values
        self.unknown = unknown  # negative ids standing for values never stored
        self.steps = 0

    def value(self, ident: int) -> Value:
        return self.values[ident] if ident >= 0 else self.unknown[ident]

    def decode(self, row: Row) -> tuple[Value, ...]:
        return tuple(self.value(i) for i in row)

    def encode_term(self, term: Term, binding: dict[str, int]) -> int | None:
        if isinstance(term, Const):
            return self.mat.dictionary.lookup(term.value)
        return binding.get(term.name)

    def original(self, rule: Rule) -> Rule:
        return self.mat.analysis.origin.get(rule, rule)

    # Assignments of a rule body, bound by the head row.
    def assignments(
        self, rule: Rule, row: Row
    ) -> Iterator[tuple[dict[str, int], list[Row | None]]]:
        binding: dict[str, int] = {}
        if not _unify(rule.head, row, binding, self.mat):
            return
        yield from self._solve(rule, list(range(len(rule.body))), binding, [None] * len(rule.body))

    def _solve(
        self, rule: Rule, remaining: list[int], binding: dict[str, int], rows: list[Row | None]
    ) -> Iterator[tuple[dict[str, int], list[Row | None]]]:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _Budget("explanation search exceeded its budget")
        if not remaining:
            yield binding, rows
            return
        k = self._pick(rule, remaining, binding)
        rest = [i for i in remaining if i != k]
        lit = rule.body[k]
        if isinstance(lit, Comparison):
            if self._compare(lit, binding):
                yield from self._solve(rule, rest, binding, rows)
            return
        if isinstance(lit, Negation):
            row = tuple(self.encode_term(t, binding) for t in lit.atom.args)
            if any(v is None for v in row) or not self.mat.contains(lit.atom.relation, row):  # type: ignore[arg-type]
                yield from self._solve(rule, rest, binding, rows)
            return
        assert isinstance(lit, Atom)
        for match in self._matches(lit, binding):
            extended = dict(binding)
            if _unify(lit, match, extended, self.mat):
                new_rows = list(rows)
                new_rows[k] = match
                yield from self._solve(rule, rest, extended, new_rows)

    def _pick(self, rule: Rule, remaining: list[int], binding: dict[str, int]) -> int:
        def bound(t: Term) -> bool:
            return isinstance(t, Const) or t.name in binding

        best, best_score = remaining[0], -1
        for k in remaining:
            lit = rule.body[k]
            if isinstance(lit, Comparison):
                if bound(lit.left) and bound(lit.right):
                    return k
            elif isinstance(lit, Negation):
                if all(bound(t) or (isinstance(t, Var) and t.anonymous) for t in lit.atom.args):
                    return k
            else:
                score = sum(1 for t in lit.args if bound(t))
                if score > best_score:
                    best, best_score = k, score
        return best

    def _matches(self, atom: Atom, binding: dict[str, int]) -> list[Row]:
        cols: list[int] = []
        row: list[int] = []
        for i, t in enumerate(atom.args):
            v = self.encode_term(t, binding) if not (isinstance(t, Var) and t.anonymous) else None
            if isinstance(t, Const) and v is None:
                return []  # a constant never stored: nothing can match
            row.append(v if v is not None else 0)
            if v is not None:
                cols.append(i)
        rel = atom.relation
        if rel not in self.mat.relations and not self.mat.is_on_demand(rel):
            return []
        return list(self.mat.lookup(rel, tuple(cols), tuple(row)))

    def _compare(self, lit: Comparison, binding: dict[str, int]) -> bool:
        a = self.encode_term(lit.left, binding)
        b = self.encode_term(lit.right, binding)
        if lit.op in ("=", "!="):
            if a is None or b is None:  # a constant never stored differs from every value
                return lit.op == "!=" and a != b
            return (a == b) == (lit.op == "=")
        va = lit.left.value if a is None else self.value(a)  # type: ignore[union-attr]
        vb = lit.right.value if b is None else self.value(b)  # type: ignore[union-attr]
        from rune.ivm.plan import _le, _lt

        return {
            "<": lambda: _lt(va, vb),
            "<=": lambda: _le(va, vb),
            ">": lambda: _lt(vb, va),
            ">=": lambda: _le(vb, va),
        }[lit.op]()

    # Derivations.
    def derive(
        self, relation: str, row: Row, path: frozenset[tuple[str, Row]]
    ) -> Derivation | None:
        mat = self.mat
        if not mat.contains(relation, row):
            return None
        rules = mat.rules_for(relation)
        values = self.decode(row)
        if not rules:
            return Derivation(relation, values)
        path = path | {(relation, row)}
        for rule in rules:
            body = rule.body
            if len(body) == 1 and isinstance(body[0], Atom) and is_base(body[0].relation):
                if mat.contains(body[0].relation, row):
                    return Derivation(relation, values)
                continue
            shown = self.original(rule)
            for _binding, rows in self.assignments(rule, row):
                children: list[Derivation] = []
                for k, lit in enumerate(body):
                    if not isinstance(lit, Atom):
                        continue
                    body_row = rows[k]
                    assert body_row is not None
                    if (lit.relation, body_row) in path:
                        break
                    child = self.derive(lit.relation, body_row, path)
                    if child is None:
                        break
                    children.append(child)
                else:
                    absent = tuple(
                        _substitute(shown.body[k], _binding, self.value)
                        for k, lit in enumerate(body)
                        if isinstance(lit, Negation)
                    )
                    return Derivation(
                        relation,
                        values,
                        str(shown),
                        rule.line,
                        rule.column,
                        tuple(children),
                        absent,
                    )
        return None

    def attempts(self, relation: str, row: Row) -> list[Attempt]:
        out = []
        for rule in self.mat.rules_for(relation):
            body = rule.body
            if len(body) == 1 and isinstance(body[0], Atom) and is_base(body[0].relation):
                continue  # "not asserted" is implied by the absence itself
            shown = self.original(rule)
            binding: dict[str, int] = {}
            if not _unify(rule.head, row, binding, self.mat):
                reason = "the head does not match the tuple"
                out.append(Attempt(str(shown), rule.line, rule.column, "head", -1, reason))
                continue
            bindings = [binding]
            for k in _check_order(body, set(binding)):
                lit = body[k]
                survivors = []
                for b in bindings:
                    for sb, _ in self._solve(rule, [k], b, [None] * len(body)):
                        survivors.append(sb)
                        if len(survivors) >= MAX_BINDINGS:
                            break
                    if len(survivors) >= MAX_BINDINGS:
                        break
                if not survivors:
                    failed = _substitute(shown.body[k], binding, self.value)
                    reason = (
                        "the comparison is false"
                        if isinstance(lit, Comparison)
                        else "the negated atom holds"
                        if isinstance(lit, Negation)
                        else "no matching tuple"
                    )
                    tried = [_substitute(shown.body[k], b, self.value) for b in bindings]
                    # sorted: the same answer whatever order the indexes hold the rows in
                    shown_tried = tuple(sorted(set(tried)))[:MAX_TRIED]
                    if shown_tried == (failed,):
                        shown_tried = ()  # the head bound everything: nothing to add
                    total = len(bindings) if shown_tried else 0
                    attempt = Attempt(
                        str(shown), rule.line, rule.column, failed, k, reason, shown_tried, total
                    )
                    out.append(attempt)
                    break
                bindings = survivors
        return out


def _check_order(body: tuple[Literal, ...], bound: set[str]) -> list[int]:
    """Body literals in source order, except that a comparison or negated atom comes right
    after the atoms that bind its variables (``bound``: those the head binds)."""
    order: list[int] = []
    waiting: list[int] = []

    def ready(lit: Literal) -> bool:
        terms = (lit.left, lit.right) if isinstance(lit, Comparison) else lit.atom.args  # type: ignore[union-attr]
        return all(t.name in bound for t in terms if isinstance(t, Var) and not t.anonymous)

    for k, lit in enumerate(body):
        if isinstance(lit, Atom):
            order.append(k)
            bound.update(v.name for v in lit.variables if not v.anonymous)
            now = [j for j in waiting if ready(body[j])]
            order.extend(now)
            waiting = [j for j in waiting if j not in now]
        elif ready(lit):
            order.append(k)
        else:
            waiting.append(k)
    return order + waiting


def _unify(atom: Atom, row: Row, binding: dict[str, int], mat: Materialization) -> bool:
    for t, v in zip(atom.args, row, strict=True):
        if isinstance(t, Const):
            if mat.dictionary.lookup(t.value) != v:
                return False
        elif t.anonymous:
            continue
        else:
            seen = binding.get(t.name)
            if seen is None:
                binding[t.name] = v
            elif seen != v:
                return False
    return True


def _substitute(lit: Literal, binding: dict[str, int], value: Callable[[int], Value]) -> str:
    def term(t: Term) -> str:
        if isinstance(t, Var) and not t.anonymous and t.name in binding:
            return render_value(value(binding[t.name]))
        return str(t)

    if isinstance(lit, Comparison):
        return f"{term(lit.left)} {lit.op} {term(lit.right)}"
    atom = lit.atom if isinstance(lit, Negation) else lit
    text = f"{atom.relation}({', '.join(term(t) for t in atom.args)})"
    return f"!{text}" if isinstance(lit, Negation) else text


def explain(mat: Materialization, relation: str, values: tuple[Value, ...]) -> Derivation | Absence:
    """Explain ``relation(values)``; values never stored get negative ids that match nothing."""
    unknown: dict[int, Value] = {}
    ids: list[int] = []
    for v in values:
        ident = mat.dictionary.lookup(v)
        if ident is None:
            ident = -1 - len(unknown)
            unknown[ident] = v
        ids.append(ident)
    row = tuple(ids)
    explainer = _Explainer(mat, unknown)
    if not unknown and mat.contains(relation, row):
        found = explainer.derive(relation, row, frozenset())
        if found is None:  # cannot happen for a consistent materialization
            raise DatalogError(f"no derivation found for present tuple {relation}{values}")
        return found
    return Absence(relation, values, tuple(explainer.attempts(relation, row)))
