"""Property tests: incremental maintenance by ``rune.ivm.Engine`` equals evaluation from scratch.

For a random stratified program (``programs.py``) and a random stream of update batches, after
every batch every relation's contents equal the reference evaluator's model of the current base
facts, and the returned changes are exactly the differences between successive states. Models
are compared with type-tagged values so that ``True`` and ``1`` can never be confused.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.ivm import Engine

from .programs import (
    DOMAIN,
    Batch,
    GenProgram,
    apply_batch,
    examples,
    program_pairs,
    programs,
    update_streams,
)
from .reference import Atom, Neg, evaluate_tagged, tag_model, tag_tuple

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]

Tagged = dict[str, set[tuple]]


@st.composite
def program_and_stream(draw: st.DrawFn) -> tuple[GenProgram, list[Batch]]:
    prog = draw(programs())
    return prog, draw(update_streams(prog))


def _sorted(facts: Mapping[str, set[tuple]]) -> dict[str, list[tuple]]:
    return {rel: sorted(tuples, key=repr) for rel, tuples in facts.items() if tuples}


def snapshot(eng: Engine, relations: set[str]) -> Tagged:
    return tag_model({rel: eng.query(rel) for rel in relations})


def check_changes(changes: Mapping, before: Tagged, after: Tagged, where: str) -> None:
    """``changes`` is exactly the non-empty differences between ``before`` and ``after``."""
    for rel in sorted(set(before) | set(after) | set(changes)):
        old, new = before.get(rel, set()), after.get(rel, set())
        added, removed = new - old, old - new
        if not added and not removed:
            assert rel not in changes, f"{where}: {rel} did not change but is in changes"
            continue
        assert rel in changes, f"{where}: {rel} changed (+{added} -{removed}) but not reported"
        change = changes[rel]
        assert isinstance(change.added, frozenset) and isinstance(change.removed, frozenset)
        got_added = {tag_tuple(t) for t in change.added}
        got_removed = {tag_tuple(t) for t in change.removed}
        assert (got_added, got_removed) == (added, removed), f"{where}: changes of {rel}"


def run_stream(
    prog: GenProgram, batches: list[Batch], check_each: bool = True
) -> tuple[Engine, dict[str, set[tuple]], set[str]]:
    """Apply ``batches`` to a fresh engine, checking every intermediate state if asked."""
    eng = Engine(prog.source)
    rules = list(prog.rules)
    known = prog.relations()
    state: dict[str, set[tuple]] = {}
    previous = {rel: tuples for rel, tuples in evaluate_tagged(rules).items() if rel in known}
    if check_each:
        assert snapshot(eng, known) == previous, "before any update"
    for i, batch in enumerate(batches):
        changes = eng.update(insert=batch.insert, delete=batch.delete)
        state = apply_batch(state, batch)
        known |= set(batch.insert) | set(batch.delete)
        model = evaluate_tagged(rules, state)
        expected = {rel: model.get(rel, set()) for rel in known}
        if check_each:
            assert snapshot(eng, known) == expected, f"after batch {i}"
            check_changes(changes, previous, expected, f"batch {i}")
        previous = expected
    return eng, state, known


@settings(max_examples=examples(300), deadline=None, suppress_health_check=_HEALTH)
@given(program_and_stream())
def test_updates_equal_evaluation_from_scratch(case: tuple[GenProgram, list[Batch]]) -> None:
    prog, batches = case
    run_stream(prog, batches)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=_HEALTH)
@given(program_and_stream())
def test_bulk_load_equals_incremental(case: tuple[GenProgram, list[Batch]]) -> None:
    prog, batches = case
    eng, state, _ = run_stream(prog, batches, check_each=False)
    fresh = Engine(prog.source)
    fresh.update(insert=_sorted(state))
    expected = evaluate_tagged(list(prog.rules), state)
    bulk_known = prog.relations() | {rel for rel, tuples in state.items() if tuples}
    assert snapshot(fresh, bulk_known) == {rel: expected.get(rel, set()) for rel in bulk_known}
    assert snapshot(eng, bulk_known) == snapshot(fresh, bulk_known)


@st.composite
def replace_cases(draw: st.DrawFn) -> tuple[GenProgram, GenProgram, list[Batch], list[Batch]]:
    old, new = draw(program_pairs())
    before = draw(update_streams(old, max_batches=3))
    # After the replacement: protect the new program's source facts too.
    after = draw(update_streams(new, max_batches=3, first_batch=4))
    return old, new, before, after


@settings(max_examples=examples(100), deadline=None, suppress_health_check=_HEALTH)
@given(replace_cases())
def test_replace_returns_derived_diff(
    case: tuple[GenProgram, GenProgram, list[Batch], list[Batch]],
) -> None:
    old, new, before, after = case
    eng, state, _ = run_stream(old, before, check_each=False)
    old_model = evaluate_tagged(list(old.rules), state)
    new_model = evaluate_tagged(list(new.rules), state)
    # Both programs define exactly p0..pk (same arities); base relations do not change.
    derived = set(new.derived)
    changes = eng.replace(new.source)
    check_changes(
        changes,
        {rel: old_model.get(rel, set()) for rel in derived},
        {rel: new_model.get(rel, set()) for rel in derived},
        "replace",
    )
    # Relations the new program mentions or that hold facts. (A relation known before only
    # through updates and now empty is not queried: the engine forgets it on replace().)
    known = new.relations() | {rel for rel, tuples in state.items() if tuples}
    assert snapshot(eng, known) == {rel: new_model.get(rel, set()) for rel in known}
    # The replaced engine keeps maintaining the new program incrementally.
    previous = {rel: new_model.get(rel, set()) for rel in known}
    for i, batch in enumerate(after):
        changes = eng.update(insert=batch.insert, delete=batch.delete)
        state = apply_batch(state, batch)
        known |= set(batch.insert) | set(batch.delete)
        model = evaluate_tagged(list(new.rules), state)
        expected = {rel: model.get(rel, set()) for rel in known}
        assert snapshot(eng, known) == expected, f"after replace, batch {i}"
        check_changes(changes, previous, expected, f"after replace, batch {i}")
        previous = expected


# -- contains / lookup, materialized and on demand -------------------------------------------


def _depends_on(prog: GenProgram) -> dict[str, set[str]]:
    """relation -> relations its rules read (positively or negated), transitively."""
    direct: dict[str, set[str]] = {}
    for rule in prog.rules:
        body = {
            lit.rel if isinstance(lit, Atom) else lit.atom.rel
            for lit in rule.body
            if isinstance(lit, Atom | Neg)
        }
        direct.setdefault(rule.head.rel, set()).update(body)
    closure = {rel: set(deps) for rel, deps in direct.items()}
    changed = True
    while changed:
        changed = False
        for deps in closure.values():
            more = set().union(*(closure.get(d, set()) for d in deps)) - deps
            if more:
                deps |= more
                changed = True
    return closure


def on_demand_choices(prog: GenProgram) -> list[frozenset[str]]:
    """Sets of derived relations that may be on demand: non-recursive, closed upwards."""
    deps = _depends_on(prog)
    recursive = {rel for rel, d in deps.items() if rel in d}
    choices = []
    for rel in prog.derived:
        group = frozenset({rel} | {r for r, d in deps.items() if rel in d})
        if not group & recursive:
            choices.append(group)
    return choices


@st.composite
def on_demand_cases(draw: st.DrawFn) -> tuple[GenProgram, frozenset[str], list[Batch]]:
    prog = draw(programs())
    choices = on_demand_choices(prog)
    demand = draw(st.sampled_from(choices)) if choices else frozenset()
    return prog, demand, draw(update_streams(prog, no_facts=demand))


def _patterns(arity: int, present: set[tuple]) -> list[tuple]:
    """Lookup patterns: each present tuple and two absent ones, under every column mask."""
    rows = [*sorted(present, key=repr)[:6], ("zz",) * arity, (DOMAIN[0],) * arity]
    out = []
    for row in rows:
        for mask in itertools.product((False, True), repeat=arity):
            out.append(tuple(v if keep else None for v, keep in zip(row, mask, strict=True)))
    return out


def check_point_queries(eng: Engine, rel: str, arity: int, expected: set[tuple]) -> None:
    """``contains`` and ``lookup`` agree with ``expected`` (a set of tagged tuples)."""
    plain = [tuple(v for _, v in t) for t in expected]
    candidates = set(itertools.product(DOMAIN, repeat=arity)) if arity <= 2 else set()
    for row in [*plain, *candidates]:
        assert eng.contains(rel, row) == (tag_tuple(row) in expected), f"contains {rel}{row}"
    for pattern in _patterns(arity, set(plain)):
        got = {tag_tuple(t) for t in eng.lookup(rel, pattern)}
        want = {
            t
            for t in expected
            if all(p is None or tag_tuple((p,))[0] == v for p, v in zip(pattern, t, strict=True))
        }
        assert got == want, f"lookup {rel}{pattern}"


@settings(max_examples=examples(100), deadline=None, suppress_health_check=_HEALTH)
@given(on_demand_cases())
def test_contains_lookup_and_on_demand(
    case: tuple[GenProgram, frozenset[str], list[Batch]],
) -> None:
    prog, demand, batches = case
    rules = list(prog.rules)
    eng = Engine(prog.source, on_demand=sorted(demand))
    state: dict[str, set[tuple]] = {}
    known = prog.relations()
    initial = evaluate_tagged(rules, state)  # program facts hold before any update
    previous: Tagged = {rel: t for rel, t in initial.items() if rel not in demand}
    for i, batch in enumerate(batches):
        changes = eng.update(insert=batch.insert, delete=batch.delete)
        state = apply_batch(state, batch)
        known |= set(batch.insert) | set(batch.delete)
        model = evaluate_tagged(rules, state)
        expected = {rel: model.get(rel, set()) for rel in known}
        materialized = {rel: t for rel, t in expected.items() if rel not in demand}
        assert not set(changes) & demand, f"batch {i}: on-demand relation in changes"
        check_changes(changes, previous, materialized, f"batch {i}")
        previous = materialized
        assert snapshot(eng, known) == expected, f"after batch {i}"
        for rel in sorted(known):
            check_point_queries(eng, rel, prog.arities[rel], expected[rel])
