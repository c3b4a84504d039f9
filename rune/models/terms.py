"""The terms and literals the model compiler writes Datalog rules with.

A :data:`Term` is a variable (:class:`Var`) or a string constant (:class:`Const`); a
:data:`Lit` is an atom (:class:`Atom`, possibly negated) or a comparison (:class:`Cmp`). Each
prints as Datalog source. :func:`unify` and :func:`subst` merge rule bodies that must agree on a
subject (an intersection); :func:`order_body` puts a body in an order the engine accepts.
:class:`Alt` is one way an expression holds: a rule body and the subject it yields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import orjson

__all__ = [
    "EMPTY",
    "STAR",
    "Alt",
    "Atom",
    "Cmp",
    "Const",
    "Lit",
    "Subj",
    "Term",
    "Var",
    "order_body",
    "quote",
    "subst",
    "subst_term",
    "unify",
]


@dataclass(frozen=True, slots=True)
class Var:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Const:
    value: str

    def __str__(self) -> str:
        return orjson.dumps(self.value).decode()


Term = Var | Const
Subj = tuple[Term, Term, Term]
"""A subject: type, id and relation (``""`` for a plain subject)."""


@dataclass(frozen=True, slots=True)
class Atom:
    rel: str
    args: tuple[Term, ...]
    neg: bool = False

    def __str__(self) -> str:
        return ("!" if self.neg else "") + f"{self.rel}({', '.join(map(str, self.args))})"


@dataclass(frozen=True, slots=True)
class Cmp:
    left: Term
    op: str
    right: Term

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


Lit = Atom | Cmp

EMPTY: Final = Const("")
"""The subject relation of a plain subject."""
STAR: Final = Const("*")
"""The subject id of a wildcard."""


def quote(s: str) -> str:
    """``s`` as a Datalog string literal."""
    return str(Const(s))


def subst_term(t: Term, s: dict[str, Term]) -> Term:
    while isinstance(t, Var) and t.name in s:
        t = s[t.name]
    return t


def subst(lit: Lit, s: dict[str, Term]) -> Lit:
    if isinstance(lit, Atom):
        return Atom(lit.rel, tuple(subst_term(a, s) for a in lit.args), lit.neg)
    return Cmp(subst_term(lit.left, s), lit.op, subst_term(lit.right, s))


def unify(pairs: Iterable[tuple[Term, Term]]) -> dict[str, Term] | None:
    """A substitution making each pair equal, or None when two constants differ."""
    s: dict[str, Term] = {}
    for a, b in pairs:
        a, b = subst_term(a, s), subst_term(b, s)
        if a == b:
            continue
        if isinstance(a, Var):
            s[a.name] = b
        elif isinstance(b, Var):
            s[b.name] = a
        else:
            return None
    return s


def order_body(body: tuple[Lit, ...]) -> list[Lit]:
    """Positive atoms first, then comparisons and negations (each after its variables)."""
    pos = [lit for lit in body if isinstance(lit, Atom) and not lit.neg]
    rest = [lit for lit in body if not (isinstance(lit, Atom) and not lit.neg)]
    return pos + rest


@dataclass(frozen=True, slots=True)
class Alt:
    """One way an expression holds: a rule body and the subject it yields (``subj``), or,
    for a *wild* alternative, that it holds for every plain subject of type ``wild``."""

    body: tuple[Lit, ...]
    subj: Subj | None = None
    wild: str | None = None
