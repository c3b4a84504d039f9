"""The set-at-a-time path for transitive closures (``closure.Closure``) equals the oracle.

A bulk load of a stratum shaped ``p(X, Z) :- p(X, Y), e(Y, Z)`` (either orientation, several
edge relations, any seed rules) computes reachable sets instead of semi-naive rounds and fills
the relation's index maps directly. Random graphs (cycles and self-loops included) are loaded,
then changed incrementally; every relation, and lookups through both columns' indexes, must
equal the reference evaluator's model.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.ivm import Engine, evaluate
from rune.ivm import closure as closure_path
from rune.ivm.analysis import analyze
from rune.ivm.parser import parse

from .programs import examples
from .reference import Atom, Rule, Var, evaluate_tagged, tag_model

X, Y, Z = Var("X"), Var("Y"), Var("Z")

PROGRAMS: list[tuple[str, list[Rule], bool]] = [
    (
        "p(X, Y) :- e(X, Y). p(X, Z) :- p(X, Y), e(Y, Z).",
        [
            Rule(Atom("p", (X, Y)), (Atom("e", (X, Y)),)),
            Rule(Atom("p", (X, Z)), (Atom("p", (X, Y)), Atom("e", (Y, Z)))),
        ],
        True,
    ),
    (
        "p(X, Y) :- s(X, Y). p(X, Z) :- e(X, Y), p(Y, Z).",
        [
            Rule(Atom("p", (X, Y)), (Atom("s", (X, Y)),)),
            Rule(Atom("p", (X, Z)), (Atom("e", (X, Y)), Atom("p", (Y, Z)))),
        ],
        True,
    ),
    (
        "p(X, Y) :- s(Y, X). p(X, Z) :- p(X, Y), e(Y, Z). p(X, Z) :- p(X, Y), f(Z, Y).",
        [
            Rule(Atom("p", (X, Y)), (Atom("s", (Y, X)),)),
            Rule(Atom("p", (X, Z)), (Atom("p", (X, Y)), Atom("e", (Y, Z)))),
            Rule(Atom("p", (X, Z)), (Atom("p", (X, Y)), Atom("f", (Z, Y)))),
        ],
        True,
    ),
    (  # mixed orientations: not a closure, semi-naive rounds
        "p(X, Y) :- e(X, Y). p(X, Z) :- p(X, Y), e(Y, Z). p(X, Z) :- e(X, Y), p(Y, Z).",
        [
            Rule(Atom("p", (X, Y)), (Atom("e", (X, Y)),)),
            Rule(Atom("p", (X, Z)), (Atom("p", (X, Y)), Atom("e", (Y, Z)))),
            Rule(Atom("p", (X, Z)), (Atom("e", (X, Y)), Atom("p", (Y, Z)))),
        ],
        False,
    ),
]

NODES = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])
EDGES = st.lists(st.tuples(NODES, NODES), max_size=25)


def test_closure_shapes_are_detected() -> None:
    for source, _, closure in PROGRAMS:
        analysis = analyze(parse(source), ())
        found = [closure_path.Closure.detect(s) for s in analysis.strata if s.recursive]
        assert (found[0] is not None) == closure, source


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.integers(0, len(PROGRAMS) - 1),
    facts=st.fixed_dictionaries(
        {"e": EDGES, "s": EDGES, "f": EDGES, "p": st.lists(st.tuples(NODES, NODES), max_size=3)}
    ),
    changes=st.lists(
        st.tuples(st.sampled_from(["e", "s", "f", "p"]), st.tuples(NODES, NODES), st.booleans()),
        max_size=8,
    ),
)
def test_closure_path_equals_the_oracle(
    which: int,
    facts: dict[str, list[tuple[str, str]]],
    changes: list[tuple[str, tuple[str, str], bool]],
) -> None:
    source, rules, _ = PROGRAMS[which]
    used = {a.rel for r in rules for a in r.body if isinstance(a, Atom)} | {"p"}  # p: asserted
    state = {rel: set(facts[rel]) for rel in used}
    eng = Engine(source)
    eng.update(insert={rel: sorted(rows) for rel, rows in state.items()})
    check(eng, rules, state)
    for rel, row, insert in changes:
        if rel not in used:
            continue
        if insert:
            eng.update(insert={rel: [row]})
            state[rel].add(row)
        else:
            eng.update(delete={rel: [row]})
            state[rel].discard(row)
        check(eng, rules, state)


def check(eng: Engine, rules: list[Rule], state: dict[str, set[tuple[str, str]]]) -> None:
    want = evaluate_tagged(rules, state)
    got = tag_model({"p": eng.query("p")})
    assert got["p"] == want["p"]
    for node in ["a", "b", "c", "d", "e", "f", "g"]:
        assert set(eng.lookup("p", (node, None))) == {t for t in eng.query("p") if t[0] == node}
        assert set(eng.lookup("p", (None, node))) == {t for t in eng.query("p") if t[1] == node}


def test_closure_path_declining_falls_back_to_semi_naive(monkeypatch: object) -> None:
    """When the memoized sets would be too large the stratum is evaluated by rounds, the
    copied seed rules included."""
    import pytest

    assert isinstance(monkeypatch, pytest.MonkeyPatch)
    monkeypatch.setattr(closure_path, "CLOSURE_MEMO", -(10**9))  # every budget exceeded at once
    declined: list[bool] = []
    original = evaluate.Materialization._closure

    def spy(self: evaluate.Materialization, sp: object, seeds: object) -> bool:
        declined.append(not original(self, sp, seeds))  # type: ignore[arg-type]
        return declined[-1] is False

    monkeypatch.setattr(evaluate.Materialization, "_closure", spy)
    edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "e")]
    for source, rules, closure in PROGRAMS:
        if not closure:
            continue
        state = {"e": set(edges), "s": {("a", "c"), ("d", "e")}, "f": {("b", "d")}}
        used = {a.rel for r in rules for a in r.body if isinstance(a, Atom)} - {"p"}
        state = {rel: rows for rel, rows in state.items() if rel in used}
        eng = Engine(source)
        eng.update(insert={rel: sorted(rows) for rel, rows in state.items()})
        check(eng, rules, {**state, "p": set()})
    assert declined.count(True) == 3  # each load declined (an empty stratum need not)
