"""The oracles agree: the reference evaluator equals clingo, and the engine equals the reference.

ASP translation (clingo 5.8): strings stay quoted strings, integers stay numbers, entities
become ``ent("Type","id")`` and booleans the constants ``rune_true``/``rune_false``; negation is
``not``. Clingo orders *all* symbols (numbers < ... < strings, functions in between), whereas
our ``< <= > >=`` are false unless both sides are ints or both are strings. To stay sound, every
ordering comparison ``L < R`` is translated as ``rune_ty(L, T), rune_ty(R, T), L < R`` where the
program declares ``rune_ty(c, int)`` for every integer and ``rune_ty(c, str)`` for every string
constant occurring in the program or the facts (Datalog without arithmetic never produces
other values), and nothing for entities and booleans. Within one type clingo's order agrees
with Python's (numeric, resp. code point order for the ASCII strings we generate).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import clingo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.ivm.values import EntityRef

from .programs import GenProgram, apply_batch, examples, programs, update_streams
from .reference import Atom, Cmp, Neg, Rule, Var, evaluate_tagged, tag, tag_model

SETTINGS = settings(
    max_examples=examples(200),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- translation to ASP ---------------------------------------------------------------------


def asp_value(value: object) -> str:
    if isinstance(value, bool):
        return "rune_true" if value else "rune_false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # the generated strings need no escapes beyond JSON's
    if isinstance(value, EntityRef):
        return f"ent({json.dumps(value.type)},{json.dumps(value.id)})"
    raise TypeError(value)


def from_symbol(sym: clingo.Symbol) -> object:
    if sym.type == clingo.SymbolType.Number:
        return sym.number
    if sym.type == clingo.SymbolType.String:
        return sym.string
    if sym.name == "rune_true" and not sym.arguments:
        return True
    if sym.name == "rune_false" and not sym.arguments:
        return False
    if sym.name == "ent" and len(sym.arguments) == 2:
        return EntityRef(sym.arguments[0].string, sym.arguments[1].string)
    raise ValueError(f"unexpected symbol {sym}")


def _term(term: object) -> str:
    return term.name if isinstance(term, Var) else asp_value(term)


def _atom(atom: Atom) -> str:
    return f"{atom.rel}({','.join(_term(t) for t in atom.args)})"


def to_asp(rules: tuple[Rule, ...] | list[Rule], facts: dict[str, Iterable[tuple]]) -> str:
    lines = []
    constants: set[tuple[str, object]] = set()
    arities: dict[str, int] = {}

    def note(term: object) -> None:
        if not isinstance(term, Var):
            constants.add(tag(term))

    for rule in rules:
        arities[rule.head.rel] = len(rule.head.args)
        for t in rule.head.args:
            note(t)
        body = []
        for i, lit in enumerate(rule.body):
            if isinstance(lit, Atom):
                arities[lit.rel] = len(lit.args)
                body.append(_atom(lit))
                for t in lit.args:
                    note(t)
            elif isinstance(lit, Neg):
                arities[lit.atom.rel] = len(lit.atom.args)
                body.append("not " + _atom(lit.atom))
                for t in lit.atom.args:
                    note(t)
            else:
                note(lit.left)
                note(lit.right)
                left, right = _term(lit.left), _term(lit.right)
                if lit.op not in ("=", "!="):
                    body.append(f"rune_ty({left},RuneT{i})")
                    body.append(f"rune_ty({right},RuneT{i})")
                body.append(f"{left} {lit.op} {right}")
        head = _atom(rule.head)
        lines.append(f"{head} :- {', '.join(body)}." if body else f"{head}.")
    for rel, tuples in facts.items():
        for tup in tuples:
            arities[rel] = len(tup)
            lines.append(f"{rel}({','.join(asp_value(v) for v in tup)}).")
            constants.update(tag(v) for v in tup)
    for kind, value in constants:
        if kind in ("int", "str"):
            lines.append(f"rune_ty({asp_value(value)},{kind}).")
    lines.extend(f"#defined {rel}/{n}." for rel, n in arities.items())
    lines.append("#defined rune_ty/2.")
    return "\n".join(lines) + "\n"


def clingo_model(rules, facts: dict[str, Iterable[tuple]]) -> dict[str, set[tuple]]:
    """The unique stable model as relation -> set of tagged tuples."""
    ctl = clingo.Control(["--models=0", "--warn=none"])
    ctl.add("base", [], to_asp(rules, facts))
    ctl.ground([("base", [])])
    models = []
    ctl.solve(on_model=lambda m: models.append(m.symbols(atoms=True)))
    assert len(models) == 1, f"a stratified program has exactly one stable model, got {models}"
    out: dict[str, set[tuple]] = {}
    for sym in models[0]:
        if sym.name != "rune_ty":
            out.setdefault(sym.name, set()).add(tuple(tag(from_symbol(a)) for a in sym.arguments))
    return out


def _nonempty(model: dict[str, set[tuple]]) -> dict[str, set[tuple]]:
    return {rel: tuples for rel, tuples in model.items() if tuples}


@st.composite
def programs_with_facts(draw: st.DrawFn) -> tuple[GenProgram, dict[str, set[tuple]]]:
    prog = draw(programs())
    (batch,) = draw(update_streams(prog, max_batches=1, first_batch=30))
    return prog, apply_batch({}, batch)


# -- tests ----------------------------------------------------------------------------------


@SETTINGS
@given(programs_with_facts())
def test_reference_equals_clingo(case: tuple[GenProgram, dict[str, set[tuple]]]) -> None:
    prog, facts = case
    expected = clingo_model(prog.rules, facts)
    actual = _nonempty(evaluate_tagged(list(prog.rules), facts))
    assert actual == expected, prog.source


def test_reference_equals_clingo_hand_written() -> None:
    x, y, z = Var("X"), Var("Y"), Var("Z")
    rules = [
        Rule(Atom("path", (x, y)), (Atom("edge", (x, y)),)),
        Rule(Atom("path", (x, z)), (Atom("path", (x, y)), Atom("edge", (y, z)))),
        Rule(
            Atom("unreach", (x, y)),
            (Atom("node", (x,)), Atom("node", (y,)), Neg(Atom("path", (x, y))), Cmp("!=", x, y)),
        ),
        Rule(Atom("small", (x,)), (Atom("node", (x,)), Cmp("<", x, 3))),
        Rule(Atom("lower", (x, y)), (Atom("node", (x,)), Atom("node", (y,)), Cmp("<", x, y))),
    ]
    alice = EntityRef("User", "alice")
    facts = {  # lists, not sets: (1,) and (True,) are equal in Python
        "edge": [(1, 2), (2, 3), (3, 1), ("a", 4), (4, alice), (True, 1)],
        "node": [(1,), (2,), (3,), (4,), ("a",), ("b",), (alice,), (True,)],
    }
    got = evaluate_tagged(rules, facts)
    assert got == clingo_model(rules, facts)
    assert (tag(True),) in got["node"] and (tag(1),) in got["node"]
    assert got["small"] == {(tag(1),), (tag(2),)}  # not True, not strings, not the entity
    assert (tag(True), tag(1)) in got["path"] and (tag(1), tag(1)) in got["path"]
    assert (tag("a"), tag("b")) in got["lower"] and (tag(3), tag(4)) in got["lower"]
    assert not any(tag(True) in t or tag(alice) in t for t in got["lower"])


@SETTINGS
@given(programs_with_facts())
def test_engine_bulk_load_equals_reference(case: tuple[GenProgram, dict[str, set[tuple]]]) -> None:
    prog, facts = case
    from rune.ivm import Engine  # imported here so that the clingo tests run without the engine

    facts = {rel: tuples for rel, tuples in facts.items() if tuples}
    expected = evaluate_tagged(list(prog.rules), facts)
    eng = Engine(prog.source)
    eng.update(insert={rel: sorted(tuples, key=repr) for rel, tuples in facts.items()})
    actual = tag_model({rel: eng.query(rel) for rel in expected})
    assert actual == expected, prog.source
