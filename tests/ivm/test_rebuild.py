"""Rebuilding off the owner thread: ``snapshot``, ``from_snapshot`` and ``warm``.

``Engine.from_snapshot(new, engine.snapshot())`` must equal ``engine.replace(new)`` in every
observable way (property test on random programs, update streams with churn of fresh values,
on-demand choices and options), raise the same errors, and be safe in another thread while
the snapshotted engine keeps answering (and lazily compiling, and indexing) on its own.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.ivm import (
    SNAPSHOT,
    ArityError,
    DatalogError,
    DatalogSyntaxError,
    Engine,
    EntityRef,
    FactSnapshot,
    IterationLimitError,
    UnknownRelationError,
)
from rune.workloads import drive

from .programs import (
    Batch,
    GenProgram,
    apply_batch,
    examples,
    program_pairs,
)
from .reference import evaluate_tagged, tag_tuple
from .test_incremental_property import check_point_queries, on_demand_choices, snapshot
from .test_reclaim import churn_streams, eager

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]


def observe(eng: Engine, known: set[str], arities: dict[str, int]) -> dict[str, Any]:
    """What a caller sees of ``eng`` over ``known`` relations (explanations: present or not,
    and the rules tried when absent; a present tuple may have several derivations)."""
    out: dict[str, Any] = {
        "relations": eng.relations(),
        "arity": {rel: eng.arity(rel) for rel in known},
        "contents": snapshot(eng, known),
        "options": (eng.max_iterations, eng.optimize),
    }
    explained: dict[Any, Any] = {}
    for rel in sorted(known):
        for row in [*sorted(eng.query(rel), key=repr)[:3], ("zz",) * arities[rel]]:
            try:
                found = eng.explain(rel, row)
            except DatalogError:  # the search budget: which derivation is tried first differs
                continue
            explained[(rel, tag_tuple(row))] = found.present or found.render()
    out["explain"] = explained
    return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal observations (explanations compared where both found one)."""
    both = a["explain"].keys() & b["explain"].keys()
    return {k: v for k, v in a.items() if k != "explain"} == {
        k: v for k, v in b.items() if k != "explain"
    } and all(a["explain"][k] == b["explain"][k] for k in both)


@st.composite
def rebuild_cases(
    draw: st.DrawFn,
) -> tuple[GenProgram, GenProgram, list[str], list[Batch], list[Batch], bool]:
    old, new = draw(program_pairs())
    before = draw(churn_streams(old, max_batches=4))
    after = draw(churn_streams(new, max_batches=3))
    choices = on_demand_choices(new)
    demand = sorted(draw(st.sampled_from(choices))) if choices and draw(st.booleans()) else []
    return old, new, demand, before, after, draw(st.booleans())


@settings(max_examples=examples(120), deadline=None, suppress_health_check=_HEALTH)
@given(rebuild_cases(), st.booleans())
def test_from_snapshot_equals_replace(
    case: tuple[GenProgram, GenProgram, list[str], list[Batch], list[Batch], bool],
    reclaim_eagerly: bool,
) -> None:
    old, new, demand, before, after, optimize = case
    with eager() if reclaim_eagerly else _nothing():
        served = Engine(old.source, optimize=optimize)
        state: dict[str, set[tuple[Any, ...]]] = {}
        for batch in before:
            served.update(insert=batch.insert, delete=batch.delete)
            state = apply_batch(state, batch)
        snap = served.snapshot()
        assert len(snap) == sum(map(len, state.values()))
        assert (snap.max_iterations, snap.optimize) == (None, optimize)
        built = Engine.from_snapshot(new.source, snap, on_demand=demand)
        d = built._dictionary  # a compact dictionary: the values of facts and constants only
        assert d.live() == len(d._ids) == sum(1 for n in d.refs if n) and not d.dead
        again = Engine.from_snapshot(new.source, snap, on_demand=demand)  # reusable
        served.replace(new.source, on_demand=demand)
        known = new.relations() | {rel for rel, rows in state.items() if rows}
        arities = {**new.arities}
        model = evaluate_tagged(list(new.rules), state)
        want = observe(served, known, arities)
        assert same(observe(built, known, arities), want)
        assert same(observe(again, known, arities), want)
        assert want["contents"] == {rel: model.get(rel, set()) for rel in known}
        for rel in sorted(known):
            check_point_queries(built, rel, arities[rel], model.get(rel, set()))
        for i, batch in enumerate(after):  # both go on alike (changes decoded as they come)
            changes = built.update(insert=batch.insert, delete=batch.delete)
            assert changes == served.update(insert=batch.insert, delete=batch.delete), i
            known |= set(batch.insert) | set(batch.delete)
        assert snapshot(built, known) == snapshot(served, known)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# -- errors and options ---------------------------------------------------------------------------

PATHS = """
path(X, Y) :- edge(X, Y).
path(X, Z) :- path(X, Y), edge(Y, Z).
"""


def _loaded(**options: Any) -> Engine:
    eng = Engine(PATHS, **options)
    eng.update(insert={"edge": [(k, k + 1) for k in range(30)], "note": [("a", "b", "c")]})
    return eng


def test_from_snapshot_raises_what_replace_raises() -> None:
    served = _loaded()
    snap = served.snapshot()
    cases: list[tuple[str, dict[str, Any], type[Exception] | None]] = [
        ("path(X) :- edge(X, Y, Z).", {}, ArityError),  # edge holds facts of arity 2
        ("q(X) :- note(X).", {}, ArityError),  # a relation only updates mention
        ("path(X, Y) :- edge(X, Y", {}, DatalogSyntaxError),
        # replace recomputes, and bounds, a stratum whose rules changed...
        (
            PATHS + "path(X, Z) :- path(X, Y), path(Y, Z).",
            {"max_iterations": 3},
            IterationLimitError,
        ),
        # ... or whose input changed (edge gains a row)
        (PATHS + "edge(X, Y) :- note(X, Y, _).", {"max_iterations": 5}, IterationLimitError),
        # it moves, unbounded, one over unchanged inputs (edge is derived now, with its rows)
        (PATHS + "edge(X, Y) :- link(X, Y).", {"max_iterations": 5}, None),
        (PATHS + "q(X) :- note(X, Y, Z).", {"max_iterations": 5}, None),
    ]
    for source, options, error in cases:
        replaced = _loaded(**options)
        if error is None:
            replaced.replace(source)
            built = Engine.from_snapshot(source, snap, **options)
            assert built.query("path") == replaced.query("path"), source
            continue
        with pytest.raises(error) as raised:
            Engine.from_snapshot(source, snap, **options)
        with pytest.raises(error) as by_replace:
            replaced.replace(source)
        assert str(raised.value) == str(by_replace.value)
    with pytest.raises(TypeError):
        Engine.from_snapshot(PATHS, snap, optimize=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Engine.from_snapshot(PATHS, snap, max_iterations=0)
    assert len(served.query("path")) == 30 * 31 // 2  # the snapshotted engine is untouched


def test_options_default_to_the_snapshot_and_can_be_changed() -> None:
    snap = _loaded(max_iterations=40, optimize=False).snapshot()
    same = Engine.from_snapshot(PATHS, snap)
    assert (same.max_iterations, same.optimize) == (40, False)
    assert (snap.max_iterations, snap.optimize) == (40, False)
    other = Engine.from_snapshot(PATHS, snap, max_iterations=None, optimize=SNAPSHOT)
    assert (other.max_iterations, other.optimize) == (None, False)
    with pytest.raises(IterationLimitError):
        Engine.from_snapshot(PATHS + "path(X, Y) :- edge(X, Y), X = 7.", snap, max_iterations=10)


def test_a_snapshot_does_not_follow_the_engine() -> None:
    served = _loaded()
    snap = served.snapshot()
    assert snap.arities()["edge"] == 2 and snap.arities()["note"] == 3
    assert len(snap) == 31 and "31 facts" in repr(snap)
    served.update(delete={"edge": [(0, 1)]}, insert={"edge": [("new", 0)]})
    for k in range(300):  # churn: ids of the snapshot's values are reused meanwhile
        served.update(insert={"edge": [(f"c{k}", f"d{k}")]})
        served.update(delete={"edge": [(f"c{k}", f"d{k}")]})
    built = Engine.from_snapshot(PATHS, snap)
    assert built.query("edge") == {(k, k + 1) for k in range(30)}
    assert built.query("note") == {("a", "b", "c")} and built.arity("note") == 3
    assert ("new", 0) in served.query("path") and ("new", 0) not in built.query("path")
    assert (0, 1) in built.query("path") and (0, 1) not in served.query("path")


def test_program_constants_only_the_old_program_held_are_left_out() -> None:
    served = Engine('far("z", "zz").\nfar(X, Y) :- edge(X, Y).')
    served.update(insert={"edge": [("a", "b")]})
    built = Engine.from_snapshot(PATHS, served.snapshot())
    assert built._dictionary.lookup("zz") is None and built._dictionary.lookup("a") is not None
    assert built.stats()["dictionary_values"] == 2
    assert built.query("path") == {("a", "b")} and built.query("edge") == {("a", "b")}


# -- warm ---------------------------------------------------------------------------------------


def _state(eng: Engine) -> tuple[Any, ...]:
    mat = eng._mat
    return (
        {name: set(rel.indexes) for name, rel in mat.relations.items()},
        {name: rel.primary for name, rel in mat.relations.items()},
        set(mat._demand_plans),
        set(mat.checkers),
    )


def test_warm_compiles_what_the_first_checks_and_lookups_would() -> None:
    facts = drive.generate(0.002, 3)
    queries = drive.check_queries(facts, 200, 3)
    cold = Engine(drive.drive_program())
    cold.update(insert=facts)
    warmed = Engine.from_snapshot(drive.drive_program(), cold.snapshot())
    warmed.warm(["allow", "in_group"], lookups=[("allow", (0, 1)), ("allow", [2, 1])])
    before = _state(warmed)
    assert before[2] >= {("allow", (0, 1, 2), True), ("allow", (0, 1), False)}
    for q in queries:
        assert warmed.contains("allow", q) == cold.contains("allow", q)
        assert warmed.contains("in_group", q[:2]) == cold.contains("in_group", q[:2])
        pattern = (q[0], q[1], None)
        assert set(warmed.lookup("allow", pattern)) == set(cold.lookup("allow", pattern))
        pattern = (None, q[1], q[2])
        assert set(warmed.lookup("allow", pattern)) == set(cold.lookup("allow", pattern))
    assert _state(warmed) == before, "the first calls after warm compiled or indexed more"
    with pytest.raises(UnknownRelationError):
        warmed.warm(["nope"])
    with pytest.raises(ValueError):
        warmed.warm([], lookups=[("allow", (3,))])


def test_warm_prepares_on_demand_relations_read_by_others() -> None:
    source = """
    .on_demand can, reads.
    can(U, D) :- member(U, G), grant(G, D).
    reads(U, D) :- can(U, D), !blocked(U).
    """
    eng = Engine(source)
    eng.update(insert={"member": [("u", "g")], "grant": [("g", "d")], "blocked": [("x",)]})
    eng.warm(["reads"])
    before = _state(eng)
    assert ("can", (0, 1), True) in before[2]
    assert eng.contains("reads", ("u", "d")) and not eng.contains("reads", ("x", "d"))
    assert _state(eng) == before


# -- threads --------------------------------------------------------------------------------------


def test_a_worker_rebuilds_while_the_owner_keeps_answering_from_the_old_engine() -> None:
    """The owner thread's first checks compile plans and build indexes on the old engine while
    the worker builds and warms the new one from a snapshot; thread switches are forced
    every few microseconds. Answers of the old engine never change; the new engine equals
    evaluation from scratch of the new program."""
    facts = drive.generate(0.005, 2)
    queries = drive.check_queries(facts, 300, 2)
    new_source = drive.drive_program() + '\nfolder_owner(S, F) :- folder_role(S, "owner", F).\n'
    old = Engine(drive.drive_program())
    old.update(insert=facts)
    reference = Engine(drive.drive_program())  # the same engine, answering alone
    reference.update(insert=facts)
    users = sorted({u for u, _ in facts["member"]})[:20]
    expected = (
        [reference.contains("allow", q) for q in queries],
        [set(reference.lookup("in_group", (u, None))) for u in users],
        [reference.explain("allow", q).render() for q in queries[:10]],
        [set(reference.lookup("allow", (q[0], q[1], None))) for q in queries[:10]],
    )
    snap = old.snapshot()
    built: list[Engine] = []
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            eng = Engine.from_snapshot(new_source, snap)
            eng.warm(["allow", "in_group"], lookups=[("allow", (0, 1))])
            built.append(eng)
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        thread = threading.Thread(target=worker)
        thread.start()
        rounds = overlapped = 0
        while thread.is_alive() or rounds < 2:
            overlapped += thread.is_alive()
            got = (
                [old.contains("allow", q) for q in queries],
                [set(old.lookup("in_group", (u, None))) for u in users],
                [old.explain("allow", q).render() for q in queries[:10]],
                [set(old.lookup("allow", (q[0], q[1], None))) for q in queries[:10]],
            )
            assert got == expected, f"round {rounds}"
            rounds += 1
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failed, failed
    assert overlapped >= 2, "the worker ran alongside the owner's first calls"
    new = built[0]
    fresh = Engine(new_source)
    fresh.update(insert=facts)
    for name, info in fresh.relations().items():
        if info.kind != "on_demand":
            assert new.query(name) == fresh.query(name), name
    assert new.relations() == fresh.relations()
    assert [new.contains("allow", q) for q in queries] == expected[0]
    assert new.query("folder_owner") and new.contains("in_group", next(iter(facts["member"])))
    # the old engine keeps its facts; ingest resumes on the new one
    user = EntityRef("User", "brand-new")
    group = facts["member"][0][1]
    changes = new.update(insert={"member": [(user, group)]})
    assert (user, group) in changes["in_group"].added and not old.contains("member", (user, group))


def test_snapshot_types_are_exported() -> None:
    snap = _loaded().snapshot()
    assert isinstance(snap, FactSnapshot)
