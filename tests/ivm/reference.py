"""A tiny, obviously-correct Datalog evaluator used as a test oracle for ``rune.ivm``.

It shares no code with the engine. A program is a list of :class:`Rule`; a body literal is an
:class:`Atom` (positive), a :class:`Neg` or a :class:`Cmp`; a term is a :class:`Var` or a
constant value (``str``, ``int``, ``bool``, :class:`~rune.ivm.values.EntityRef`). The variable
``Var("_")`` is anonymous: it matches anything and binds nothing (so inside a negated atom it
means "for no value at all").

Evaluation is the textbook one: strata by relaxation, then per stratum naive fixpoint iteration
(apply every rule to the whole current model until nothing new appears). No indexes, no deltas.

Values are compared as ``(type tag, value)`` pairs so that ``True`` and ``1`` stay different.
Semantics of comparisons: ``=``/``!=`` compare any two values (typed); ``< <= > >=`` hold only
when both sides are integers (not bools) or both are strings, and are false otherwise.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from rune.ivm.values import EntityRef

__all__ = [
    "Atom",
    "Cmp",
    "Neg",
    "Rule",
    "Var",
    "evaluate",
    "evaluate_tagged",
    "stratify",
    "tag",
    "tag_model",
    "tag_tuple",
    "untag",
]


@dataclass(frozen=True)
class Var:
    name: str  # "_" is the anonymous variable


@dataclass(frozen=True)
class Atom:
    rel: str
    args: tuple[object, ...]  # Var or constant


@dataclass(frozen=True)
class Neg:
    atom: Atom


@dataclass(frozen=True)
class Cmp:
    op: str  # one of = != < <= > >=
    left: object
    right: object


@dataclass(frozen=True)
class Rule:
    head: Atom
    body: tuple[Atom | Neg | Cmp, ...] = ()


# -- typed values ---------------------------------------------------------------------------


def tag(value: object) -> tuple[str, object]:
    """``(type tag, value)``: the identity of a value, with ``True`` distinct from ``1``."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, EntityRef):
        return ("entity", value)
    raise TypeError(f"not a Datalog value: {value!r}")


def untag(tagged: tuple[str, object]) -> object:
    return tagged[1]


def tag_tuple(tup: Iterable[object]) -> tuple[tuple[str, object], ...]:
    return tuple(tag(v) for v in tup)


def tag_model(model: Mapping[str, Iterable[Iterable[object]]]) -> dict[str, set[tuple]]:
    """Tag every tuple of every relation (use it to compare models without bool/int mixups)."""
    return {rel: {tag_tuple(t) for t in tuples} for rel, tuples in model.items()}


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def compare(op: str, left: tuple[str, object], right: tuple[str, object]) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if left[0] != right[0] or left[0] not in ("int", "str"):
        return False
    return bool(_ORDER[op](left[1], right[1]))


# -- stratification -------------------------------------------------------------------------


def stratify(rules: list[Rule]) -> dict[str, int]:
    """Stratum of every relation: >= that of positive dependencies, > that of negated ones."""
    rels = {r.head.rel for r in rules}
    for r in rules:
        for lit in r.body:
            if isinstance(lit, Atom):
                rels.add(lit.rel)
            elif isinstance(lit, Neg):
                rels.add(lit.atom.rel)
    stratum = dict.fromkeys(rels, 0)
    changed = True
    while changed:
        changed = False
        for r in rules:
            for lit in r.body:
                if isinstance(lit, Atom):
                    need = stratum[lit.rel]
                elif isinstance(lit, Neg):
                    need = stratum[lit.atom.rel] + 1
                else:
                    continue
                if stratum[r.head.rel] < need:
                    stratum[r.head.rel] = need
                    changed = True
                    if need > len(rels):
                        raise ValueError(f"program is not stratifiable (at {r.head.rel})")
    return stratum


# -- evaluation -----------------------------------------------------------------------------

Model = dict[str, set[tuple]]  # relation -> set of tagged tuples


def _term_value(term: object, env: dict[str, tuple[str, object]]) -> tuple[str, object]:
    if isinstance(term, Var):
        return env[term.name]  # KeyError here means an unsafe rule
    return tag(term)


def _match(atom: Atom, tup: tuple, env: dict[str, tuple[str, object]]) -> dict | None:
    """``env`` extended so that ``atom`` equals ``tup``, or ``None`` if they do not unify."""
    if len(tup) != len(atom.args):
        raise ValueError(f"arity mismatch on {atom.rel}: {atom.args} vs {tup}")
    new = dict(env)
    for term, val in zip(atom.args, tup, strict=True):
        if isinstance(term, Var):
            if term.name == "_":
                continue
            if term.name in new:
                if new[term.name] != val:
                    return None
            else:
                new[term.name] = val
        elif tag(term) != val:
            return None
    return new


def _bindings(atoms: list[Atom], model: Model, env: dict) -> Iterator[dict]:
    if not atoms:
        yield env
        return
    first, rest = atoms[0], atoms[1:]
    for tup in list(model.get(first.rel, ())):
        new = _match(first, tup, env)
        if new is not None:
            yield from _bindings(rest, model, new)


def _fire(rule: Rule, model: Model) -> set[tuple]:
    """Every head tuple the rule derives from ``model`` (one naive application)."""
    positives = [lit for lit in rule.body if isinstance(lit, Atom)]
    out = set()
    for env in _bindings(positives, model, {}):
        ok = True
        for lit in rule.body:
            if isinstance(lit, Neg):
                if any(_match(lit.atom, t, env) is not None for t in model.get(lit.atom.rel, ())):
                    ok = False
                    break
            elif isinstance(lit, Cmp) and not compare(
                lit.op, _term_value(lit.left, env), _term_value(lit.right, env)
            ):
                ok = False
                break
        if ok:
            out.add(tuple(_term_value(t, env) for t in rule.head.args))
    return out


def evaluate_tagged(
    rules: list[Rule], facts: Mapping[str, Iterable[Iterable[object]]] | None = None
) -> Model:
    """The least stratified model, as relation -> set of tagged tuples.

    ``facts`` are base facts of any relation (also of relations that have rules). Every relation
    mentioned by the program or the facts is a key of the result.
    """
    model: Model = {rel: {tag_tuple(t) for t in tuples} for rel, tuples in (facts or {}).items()}
    strata = stratify(rules)
    for rel in strata:
        model.setdefault(rel, set())
    for level in sorted(set(strata.values())):
        layer = [r for r in rules if strata[r.head.rel] == level]
        changed = True
        while changed:
            changed = False
            for rule in layer:
                new = _fire(rule, model) - model[rule.head.rel]
                if new:
                    model[rule.head.rel] |= new
                    changed = True
    return model


def evaluate(
    rules: list[Rule], facts: Mapping[str, Iterable[Iterable[object]]] | None = None
) -> dict[str, set[tuple]]:
    """Like :func:`evaluate_tagged` but with plain values (beware: ``True == 1`` in a set)."""
    return {
        rel: {tuple(untag(v) for v in t) for t in tuples}
        for rel, tuples in evaluate_tagged(rules, facts).items()
    }
