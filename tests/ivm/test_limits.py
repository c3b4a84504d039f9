"""Engine options: ``optimize`` (join order) and ``max_iterations`` (bound on bulk recursion).

``optimize=False`` must give exactly the results of the greedy planner (property test against
the reference evaluator, on random programs and update streams). ``max_iterations`` bounds the
semi-naive rounds of a recursive stratum while ``Engine(...)`` or ``replace`` materializes;
exceeding it raises :class:`IterationLimitError`, and a failed ``replace`` leaves the old
program and all its data in place and maintained. Updates are never bounded.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rune.ivm
from rune.ivm import DatalogError, Engine, IterationLimitError
from rune.ivm.evaluate import Materialization
from rune.ivm.parser import parse
from rune.ivm.plan import compile_plan
from rune.ivm.values import Dictionary

from .programs import Batch, GenProgram, apply_batch, examples, programs, signatures, update_streams
from .reference import evaluate_tagged
from .test_incremental_property import (
    check_changes,
    check_point_queries,
    on_demand_choices,
    snapshot,
)

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]

PATHS = """
path(X, Y) :- edge(X, Y).
path(X, Z) :- path(X, Y), edge(Y, Z).
"""


def chain(n: int) -> list[tuple[int, int]]:
    """Edges 0 -> 1 -> ... -> n."""
    return [(i, i + 1) for i in range(n)]


def chain_facts(n: int) -> str:
    return "".join(f"edge({a}, {b}).\n" for a, b in chain(n))


def closure(edges: list[tuple[Any, Any]]) -> set[tuple[Any, Any]]:
    """Transitive closure by a search from every node (independently of the engine)."""
    succ: dict[Any, set[Any]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    out = set()
    for start, nexts in succ.items():
        seen: set[Any] = set()
        todo = list(nexts)
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(succ.get(node, ()))
        out |= {(start, node) for node in seen}
    return out


# -- optimize=False gives the same results ----------------------------------------------------


@st.composite
def option_cases(
    draw: st.DrawFn,
) -> tuple[GenProgram, frozenset[str], list[Batch], GenProgram, list[Batch]]:
    sig = draw(signatures())
    prog = draw(programs(sig))
    choices = on_demand_choices(prog)
    demand = draw(st.sampled_from(choices)) if choices and draw(st.booleans()) else frozenset()
    batches = draw(update_streams(prog, no_facts=demand))
    new = draw(programs(sig))
    after = draw(update_streams(new, max_batches=2, first_batch=4))
    return prog, demand, batches, new, after


@settings(max_examples=examples(150), deadline=None, suppress_health_check=_HEALTH)
@given(option_cases())
def test_unoptimized_join_order_gives_the_same_results(
    case: tuple[GenProgram, frozenset[str], list[Batch], GenProgram, list[Batch]],
) -> None:
    prog, demand, batches, new, after = case
    on_demand = sorted(demand)
    greedy = Engine(prog.source, on_demand=on_demand)
    written = Engine(prog.source, on_demand=on_demand, optimize=False)
    assert written.optimize is False and greedy.optimize is True
    rules = list(prog.rules)
    known = prog.relations()
    state: dict[str, set[tuple]] = {}
    model = evaluate_tagged(rules, state)
    expected = {rel: model.get(rel, set()) for rel in known}
    assert snapshot(written, known) == snapshot(greedy, known) == expected, "initial"
    previous = {rel: t for rel, t in expected.items() if rel not in demand}
    for i, batch in enumerate(batches):
        changes = written.update(insert=batch.insert, delete=batch.delete)
        assert changes == greedy.update(insert=batch.insert, delete=batch.delete), f"batch {i}"
        state = apply_batch(state, batch)
        known |= set(batch.insert) | set(batch.delete)
        model = evaluate_tagged(rules, state)
        expected = {rel: model.get(rel, set()) for rel in known}
        materialized = {rel: t for rel, t in expected.items() if rel not in demand}
        check_changes(changes, previous, materialized, f"batch {i}")
        previous = materialized
        assert snapshot(written, known) == snapshot(greedy, known) == expected, f"batch {i}"
        for rel in on_demand:  # on-demand lookups run head-bound plans, compiled per pattern
            check_point_queries(written, rel, prog.arities[rel], expected[rel])

    # replace() keeps the option; the new program's plans also keep their written order
    changes = written.replace(new.source)
    assert changes == greedy.replace(new.source), "replace"
    assert written._mat.optimize is False
    rules = list(new.rules)
    known = new.relations() | {rel for rel, tuples in state.items() if tuples}
    model = evaluate_tagged(rules, state)
    expected = {rel: model.get(rel, set()) for rel in known}
    assert snapshot(written, known) == snapshot(greedy, known) == expected, "after replace"
    for i, batch in enumerate(after):
        changes = written.update(insert=batch.insert, delete=batch.delete)
        assert changes == greedy.update(insert=batch.insert, delete=batch.delete), f"after {i}"
        state = apply_batch(state, batch)
        known |= set(batch.insert) | set(batch.delete)
        model = evaluate_tagged(rules, state)
        expected = {rel: model.get(rel, set()) for rel in known}
        assert snapshot(written, known) == snapshot(greedy, known) == expected, f"after {i}"


def _order(text: str, optimize: bool, **mode: Any) -> list[int]:
    """Body literals in the order the compiled plan reads them."""
    rule = parse(text).rules[0]
    plan = compile_plan(rule, Dictionary(), optimize=optimize, **mode)
    return [a.literal for a in plan.accesses]


def test_unoptimized_plans_keep_the_written_order_of_positive_atoms() -> None:
    rule = "p(X, Z) :- e(X, Y), f(Z), g(Y, Z)."
    assert _order(rule, optimize=True) == [0, 2, 1]  # g is probed by Y before scanning f
    assert _order(rule, optimize=False) == [0, 1, 2]  # f scanned, then g fully bound: a filter
    # delta mode: the source first, then the rest as written
    assert _order(rule, optimize=True, source=0) == [2, 1]
    assert _order(rule, optimize=False, source=0) == [1, 2]
    assert _order(rule, optimize=False, source=2) == [1, 0]  # f is bound: a filter, first


def test_unoptimized_plans_still_place_filters_as_soon_as_they_are_bound() -> None:
    # a negation and a comparison written first run right after e binds their variables
    assert _order("q(X) :- !f(X), X != 2, e(X, Y), g(Y, Z).", optimize=False) == [2, 0, 3]
    eng = Engine("q(X) :- !f(X), X != 2, e(X, Y), g(Y, Z).", optimize=False)
    eng.update(insert={"e": [(1, 5), (2, 5), (3, 5), (4, 6)], "f": [(3,)], "g": [(5, 0)]})
    assert eng.query("q") == {(1,)}


def test_engine_plans_follow_the_option() -> None:
    source = "p(X, Z) :- e(X, Y), f(Z), g(Y, Z)."
    for optimize, order in ((True, [0, 2, 1]), (False, [0, 1, 2])):
        eng = Engine(source, optimize=optimize)
        (plan,) = [p for sp in eng._mat.strata for p in sp.full if len(p.rule.body) == 3]
        assert [a.literal for a in plan.accesses] == order
        eng.replace(source + "r(X) :- p(X, _).")
        (plan,) = [p for sp in eng._mat.strata for p in sp.full if len(p.rule.body) == 3]
        assert [a.literal for a in plan.accesses] == order, "replace keeps the option"


# -- max_iterations ---------------------------------------------------------------------------


def test_long_chain_exceeds_max_iterations() -> None:
    with pytest.raises(IterationLimitError) as info:
        Engine(PATHS + chain_facts(200), max_iterations=50)
    err = info.value
    assert isinstance(err, DatalogError)
    assert err.relations == ("path",) and err.limit == 50
    assert "path" in str(err) and "max_iterations=50" in str(err)
    assert "IterationLimitError" in rune.ivm.__all__


def test_max_iterations_is_the_number_of_rounds_deriving_new_tuples() -> None:
    # left-linear path over a chain of n edges derives the paths of length k in round k
    with pytest.raises(IterationLimitError):
        Engine(PATHS + chain_facts(200), max_iterations=199)
    eng = Engine(PATHS + chain_facts(200), max_iterations=200)
    assert eng.max_iterations == 200
    assert eng.query("path") == closure(chain(200))
    assert Engine(PATHS + chain_facts(200)).query("path") == closure(chain(200))
    # the same closure, doubling: far fewer rounds
    doubling = "path(X, Y) :- edge(X, Y).\npath(X, Z) :- path(X, Y), path(Y, Z).\n"
    with pytest.raises(IterationLimitError):
        Engine(doubling + chain_facts(200), max_iterations=8)
    eng = Engine(doubling + chain_facts(200), max_iterations=9)  # 2**(9-1) >= 200
    assert eng.query("path") == closure(chain(200))


def test_limit_error_names_every_relation_of_the_stratum() -> None:
    source = (
        "even(X) :- start(X).\n"
        "odd(Y) :- even(X), next(X, Y).\n"
        "even(Y) :- odd(X), next(X, Y).\n"
        "start(0).\n" + "".join(f"next({i}, {i + 1}).\n" for i in range(30))
    )
    with pytest.raises(IterationLimitError) as info:
        Engine(source, max_iterations=10)
    assert info.value.relations == ("even", "odd")
    assert "even" in str(info.value) and "odd" in str(info.value) and "10" in str(info.value)
    eng = Engine(source, max_iterations=31)
    assert eng.query("even") == {(i,) for i in range(0, 31, 2)}


def test_non_recursive_strata_are_not_bounded() -> None:
    source = "".join(f"p{i + 1}(X) :- p{i}(X).\n" for i in range(20)) + "p0(1).\n"
    assert Engine(source, max_iterations=1).query("p20") == {(1,)}


def test_bad_options_are_rejected() -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="max_iterations"):
            Engine(PATHS, max_iterations=bad)
    for wrong in (True, 2.0, "5"):
        with pytest.raises(TypeError, match="max_iterations"):
            Engine(PATHS, max_iterations=wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="optimize"):
        Engine(PATHS, optimize="no")  # type: ignore[arg-type]
    assert Engine(PATHS).max_iterations is None


def test_updates_are_not_bounded() -> None:
    eng = Engine(PATHS, max_iterations=5)
    eng.update(insert={"edge": chain(60)})  # first load into an empty engine: still an update
    assert eng.query("path") == closure(chain(60))
    changes = eng.update(insert={"edge": [(i, i + 1) for i in range(60, 120)]})  # incremental
    assert eng.query("path") == closure(chain(120))
    assert len(changes["path"].added) == len(closure(chain(120))) - len(closure(chain(60)))
    eng.update(delete={"edge": [(30, 31)]}, insert={"edge": [(30, 200), (200, 31)]})
    edges = [e for e in chain(120) if e != (30, 31)] + [(30, 200), (200, 31)]
    assert eng.query("path") == closure(edges)


# -- a failed replace leaves the old program in place -------------------------------------------

OLD = """
.on_demand reaches_end.
path(X, Y) :- edge(X, Y).
path(X, Z) :- path(X, Y), edge(Y, Z).
hop2(X, Z) :- edge(X, Y), edge(Y, Z).
reaches_end(X) :- path(X, Y), last(Y).
"""

# Same path and hop2 strata (moved into the new materialization, not recomputed); edge becomes
# derived (its asserted facts move to edge@base, renamed); hop4 builds a new index on the shared
# hop2; walk needs ~200 rounds on a 200-edge chain.
NEW = """
edge(X, Y) :- link(X, Y).
path(X, Y) :- edge(X, Y).
path(X, Z) :- path(X, Y), edge(Y, Z).
hop2(X, Z) :- edge(X, Y), edge(Y, Z).
hop4(X, Z) :- hop2(X, Y), hop2(Y, Z).
walk(X, Y) :- hop4(X, Y).
walk(X, Z) :- walk(X, Y), edge(Y, Z).
"""

FACTS: dict[str, list[tuple[Any, ...]]] = {
    "edge": [*chain(200), (7, 3)],
    "last": [(200,)],
    "path": [("x", 0)],  # an asserted fact of a derived relation (path@base)
}


def _everything(eng: Engine) -> dict[str, Any]:
    """All an outside caller can observe of ``eng`` (on-demand relations included)."""
    return {
        "relations": eng.relations(),
        "contents": {name: eng.query(name) for name in eng.relations()},
        "lookup": set(eng.lookup("reaches_end", (None,))),
        "contains": (eng.contains("reaches_end", (0,)), eng.contains("reaches_end", ("x",))),
        "explain": eng.explain("path", ("x", 1)).render(),  # one derivation only
    }


def _sizes(eng: Engine) -> dict[str, int]:
    """Stored tuples, index entries and their bytes (the dictionary aside)."""
    return {k: v for k, v in eng.stats().items() if not k.startswith(("dict", "bytes"))}


def _loaded_old() -> Engine:
    eng = Engine(OLD, max_iterations=50)
    eng.update(insert=FACTS)  # updates are not bounded: the 200-edge chain loads
    assert ("x", 200) in eng.query("path")
    assert eng.contains("reaches_end", (5,))  # on-demand plans compiled and cached
    return eng


def _check_same_as_fresh(eng: Engine) -> None:
    """``eng`` keeps answering and applying updates like an engine that never saw a replace."""
    fresh = Engine(OLD)
    fresh.update(insert=FACTS)
    assert _everything(eng) == _everything(fresh)
    batches = [
        {"delete": {"edge": [(100, 101)]}},  # DRed through a long chain
        {"insert": {"edge": [(100, 101), (200, 0)]}},  # a 201-cycle
        {"delete": {"path": [("x", 0)], "last": [(200,)]}, "insert": {"last": [(150,)]}},
        {"insert": {"edge": [("x", "y")], "path": [("y", 5)]}},
        {"delete": {"edge": [(200, 0), (7, 3)]}},
    ]
    for batch in batches:
        assert eng.update(**batch) == fresh.update(**batch), batch
        assert _everything(eng) == _everything(fresh), batch


def test_replace_exceeding_the_limit_keeps_the_old_engine() -> None:
    eng = _loaded_old()
    before = _everything(eng)
    sizes = _sizes(eng)
    old_mat = eng._mat
    shared = {name: eng._mat.relations[name] for name in ("edge", "path", "hop2")}
    indexes = {name: set(rel.indexes) for name, rel in shared.items()}
    with pytest.raises(IterationLimitError) as info:
        eng.replace(NEW)
    assert info.value.relations == ("walk",) and info.value.limit == 50
    assert eng._mat is old_mat
    assert _everything(eng) == before
    assert _sizes(eng) == sizes
    for name, rel in shared.items():  # moved back: original name, no index of the new program
        assert eng._mat.relations[name] is rel and rel.name == name
        assert set(rel.indexes) == indexes[name], name
    with pytest.raises(IterationLimitError):  # a second attempt fails the same way
        eng.replace(NEW)
    _check_same_as_fresh(eng)


def test_the_same_replace_succeeds_when_the_limit_allows_it() -> None:
    roomy = Engine(OLD, max_iterations=250)
    roomy.update(insert=FACTS)
    hop2 = roomy._mat.relations["hop2"]
    indexes = set(hop2.indexes)
    changes = roomy.replace(NEW)
    assert roomy._mat.relations["hop2"] is hop2  # shared, as in the failing case
    assert set(hop2.indexes) > indexes  # the new program probes it: what a failure drops
    assert roomy._mat.relations["edge@base"].name == "edge@base"
    assert "path" not in changes and "hop2" not in changes
    assert changes["walk"].added == roomy.query("walk") and not changes["walk"].removed
    assert (0, 200) in roomy.query("walk") and (0, 2) not in roomy.query("walk")
    fresh = Engine(NEW)
    fresh.update(insert=FACTS)
    for name in ("edge", "path", "hop2", "hop4", "walk", "last"):
        assert roomy.query(name) == fresh.query(name), name
    roomy.update(insert={"link": [(200, 201)]})
    assert (0, 201) in roomy.query("walk")


def test_replace_with_a_recursive_program_fact_chain_uses_the_engine_limit() -> None:
    eng = Engine("", max_iterations=50)
    eng.update(insert={"v": [(1,)]})
    with pytest.raises(IterationLimitError):
        eng.replace(PATHS + chain_facts(200))
    assert eng.query("v") == {(1,)} and eng.arity("path") is None
    changes = eng.replace(PATHS + chain_facts(50))
    assert changes["path"].added == closure(chain(50))


@pytest.mark.parametrize("where", ["hop4", "walk", "changes"])
def test_any_failure_during_replace_keeps_the_old_engine(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Not only the limit: an error at any point of the new materialization is undone."""
    eng = Engine(OLD)  # unbounded: the injected error is the only failure
    eng.update(insert=FACTS)
    assert eng.contains("reaches_end", (5,))
    before = _everything(eng)
    sizes = _sizes(eng)
    materialize = Materialization._materialize

    def failing(self: Materialization, sp: Any, max_iterations: int | None) -> None:
        materialize(self, sp, max_iterations)  # fail after the stratum is (half) stored
        if where in sp.stratum.relations:
            raise RuntimeError(f"injected in {where}")

    def failing_changes(*args: Any) -> None:
        raise RuntimeError("injected in changes")

    monkeypatch.setattr(Materialization, "_materialize", failing)
    monkeypatch.setattr(Engine, "_replace_changes", failing_changes)
    with pytest.raises(RuntimeError, match=f"injected in {where}"):
        eng.replace(NEW)
    monkeypatch.undo()
    assert _everything(eng) == before
    assert _sizes(eng) == sizes
    assert eng._mat.relations["edge"].name == "edge"
    _check_same_as_fresh(eng)


# -- arity limit ------------------------------------------------------------------------------


def _vars(n: int) -> str:
    return ", ".join(f"X{i}" for i in range(n))


def test_relations_of_the_largest_arity_work_everywhere() -> None:
    """64 columns: stored, on demand (checks compile per column count), lookups, explain."""
    n = rune.ivm.analysis.MAX_ARITY
    eng = Engine(f".on_demand w.\nw({_vars(n)}) :- b({_vars(n)}).\nc({_vars(n)}) :- b({_vars(n)}).")
    row = tuple(f"v{i}" for i in range(n))
    other = tuple(f"o{i}" for i in range(n))
    eng.update(insert={"b": [row, other]})
    for rel in ("b", "c", "w"):
        assert eng.contains(rel, row) and eng.contains(rel, other)
        assert not eng.contains(rel, (*row[:-1], "o0"))
        assert set(eng.lookup(rel, (row[0], *[None] * (n - 1)))) == {row}
        assert eng.query(rel) == {row, other}
    assert eng.explain("w", row).present
    wide = tuple(range(n))  # a relation only updates mention, bulk path (many rows)
    eng.update(insert={"u": [tuple(range(k, k + n)) for k in range(20)]})
    assert eng.arity("u") == n and eng.contains("u", wide)


def test_a_wider_atom_is_an_arity_error_at_its_place() -> None:
    n = rune.ivm.analysis.MAX_ARITY + 1
    with pytest.raises(
        rune.ivm.ArityError, match=r"has 65 arguments, more than the limit of 64"
    ) as info:
        Engine(f"p(X0) :- q(X0).\n\nr(X0) :-  b({_vars(n)}).")
    assert (info.value.line, info.value.column) == (3, 11)
    with pytest.raises(rune.ivm.ArityError) as info:
        Engine(f"w({_vars(n)}).".replace("X", "1"))  # a program fact
    assert (info.value.line, info.value.column) == (1, 1)


@pytest.mark.parametrize("rows", [1, 20], ids=["row path", "bulk path"])
def test_a_wider_update_is_rejected_naming_the_relation(rows: int) -> None:
    n = rune.ivm.analysis.MAX_ARITY + 1
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b")]})
    before = (eng.query("edge"), eng.query("path"), eng.stats()["dictionary_values"])
    wide = [tuple(f"w{k}_{i}" for i in range(n)) for k in range(rows)]
    with pytest.raises(
        rune.ivm.ArityError,
        match=r"insert\['wide'\].*relation wide would have 65 columns, more than the limit of 64",
    ):
        eng.update(insert={"edge": [("b", "c")], "wide": wide})
    assert eng.arity("wide") is None
    assert (eng.query("edge"), eng.query("path")) == before[:2]
