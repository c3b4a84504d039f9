"""Syntax tree of Datalog dialect v1 (docs/design.md §3).

Every node that comes from source text keeps its 1-based ``line`` and ``column`` so that later
stages (analysis, explain) can point at it. Nodes are immutable and hashable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rune.ivm.values import Value, render_value

__all__ = [
    "Atom",
    "Comparison",
    "Const",
    "Literal",
    "Negation",
    "Program",
    "Rule",
    "Term",
    "Var",
    "literal_relation",
]


@dataclass(frozen=True, slots=True)
class Var:
    """A variable. Anonymous ``_`` occurrences get distinct names starting with ``_#``."""

    name: str

    @property
    def anonymous(self) -> bool:
        return self.name.startswith("_#")

    def __str__(self) -> str:
        return "_" if self.anonymous else self.name


@dataclass(frozen=True, slots=True)
class Const:
    value: Value

    def __str__(self) -> str:
        return render_value(self.value)


Term = Var | Const


@dataclass(frozen=True, slots=True)
class Atom:
    relation: str
    args: tuple[Term, ...]
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.relation}({', '.join(map(str, self.args))})"

    @property
    def variables(self) -> list[Var]:
        return [a for a in self.args if isinstance(a, Var)]


@dataclass(frozen=True, slots=True)
class Negation:
    atom: Atom
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"!{self.atom}"


COMPARISON_OPERATORS = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True, slots=True)
class Comparison:
    op: str
    left: Term
    right: Term
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"

    @property
    def variables(self) -> list[Var]:
        return [t for t in (self.left, self.right) if isinstance(t, Var)]


Literal = Atom | Negation | Comparison


@dataclass(frozen=True, slots=True)
class Rule:
    """``head :- body.``; a fact is a rule with an empty body and a ground head."""

    head: Atom
    body: tuple[Literal, ...]
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def __str__(self) -> str:
        if not self.body:
            return f"{self.head}."
        return f"{self.head} :- {', '.join(map(str, self.body))}."

    @property
    def is_fact(self) -> bool:
        return not self.body


def literal_relation(lit: object) -> str | None:
    """The relation a body literal reads (through its negation), ``None`` for a comparison."""
    if isinstance(lit, Negation):
        return lit.atom.relation
    return lit.relation if isinstance(lit, Atom) else None


@dataclass(frozen=True, slots=True)
class OnDemand:
    """``.on_demand rel.``: the relation is computed at lookup time, never materialized."""

    relation: str
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Program:
    rules: tuple[Rule, ...]
    on_demand: tuple[OnDemand, ...] = ()
