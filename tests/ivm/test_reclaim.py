"""Reclamation of values no stored tuple holds (``values.Dictionary`` reference counts, eras).

Random programs get update streams with churn of fresh values (most inserted values are new,
most deletions hit present facts, some batches retract a whole relation), with reclamation,
compaction and era sealing made eager by tiny thresholds. After every batch the views equal
evaluation from scratch, the reference counts are exact, and the dictionary holds exactly
the values of the asserted facts and the program's constants. Changes are kept undecoded
(some half decoded) across the whole stream, while their ids are freed and reused, and must
decode to what changed when they were returned.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.ivm import Change, Engine, EntityRef, InvalidValueError, encoding, engine, store, values
from rune.ivm.values import FREED

from .programs import (
    BASE,
    DOMAIN,
    Batch,
    GenProgram,
    apply_batch,
    examples,
    program_pairs,
    programs,
)
from .reference import Atom, Cmp, Neg, Var, evaluate_tagged, tag, tag_tuple
from .test_incremental_property import check_changes, snapshot

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]

Tagged = dict[str, set[tuple[Any, ...]]]


@contextmanager
def eager(era_keep: int = 3, bulk: bool = False) -> Iterator[None]:
    """Reclaim at every update, compact and seal eras at the smallest sizes, groups become
    sets beyond 2 items; with ``bulk`` every batch is encoded by the bulk path."""
    with (
        mock.patch.object(engine, "_RECLAIM_BATCH", 1),
        mock.patch.object(encoding, "_FEW_ROWS", 1 if bulk else encoding._FEW_ROWS),
        mock.patch.object(values, "COMPACT_MIN", 1),
        mock.patch.object(values, "ERA_KEEP", era_keep),
        mock.patch.object(store, "COMPACT_ROWS", 1),
        mock.patch.object(store, "GROUP_LIMIT", 2),
    ):
        yield


# -- streams with churn of fresh values --------------------------------------------------------


@st.composite
def churn_streams(draw: st.DrawFn, program: GenProgram, max_batches: int = 10) -> list[Batch]:
    """Batches whose inserted values are often new (unique strings, entities, integers)."""
    arities = program.arities
    targets = [*BASE, *BASE, *program.derived]
    protected = program.source_facts()
    state: dict[str, set[tuple[Any, ...]]] = {rel: set() for rel in arities}
    fresh = 0
    batches = []

    def value() -> object:
        nonlocal fresh
        kind = draw(st.sampled_from(("domain", "str", "entity", "int")))
        if kind == "domain":
            return draw(st.sampled_from(DOMAIN))
        fresh += 1
        if kind == "str":
            return f"n{fresh}"
        return EntityRef("T", f"n{fresh}") if kind == "entity" else 1000 + fresh

    for i in range(draw(st.integers(1, max_batches))):
        insert: dict[str, list[tuple[Any, ...]]] = {}
        delete: dict[str, list[tuple[Any, ...]]] = {}
        for _ in range(draw(st.integers(0, 12 if i == 0 else 6))):
            rel = draw(st.sampled_from(targets))
            present = sorted(state[rel] - {r for n, r in protected if n == rel}, key=repr)
            op = draw(st.sampled_from(("ins", "ins", "del", "del", "clear", "both")))
            if op in ("del", "both") and present:
                row = draw(st.sampled_from(present))
                delete.setdefault(rel, []).append(row)
                if op == "both":
                    insert.setdefault(rel, []).append(row)
            elif op == "clear" and present:
                delete.setdefault(rel, []).extend(present)
            else:
                row = tuple(value() for _ in range(arities[rel]))
                insert.setdefault(rel, []).append(row)
        batch = Batch(insert, delete)
        state = apply_batch(state, batch)
        batches.append(batch)
    return batches


def program_constants(prog: GenProgram) -> set[tuple[str, object]]:
    out: set[tuple[str, object]] = set()

    def terms(lit: object) -> list[object]:
        if isinstance(lit, Atom):
            return list(lit.args)
        if isinstance(lit, Neg):
            return list(lit.atom.args)
        assert isinstance(lit, Cmp)
        return [lit.left, lit.right]

    for rule in prog.rules:
        for lit in (rule.head, *rule.body):
            out.update(tag(t) for t in terms(lit) if not isinstance(t, Var))
    return out


def check_dictionary(eng: Engine, constants: set[tuple[str, object]]) -> None:
    """Counts are exact; the live values are those of asserted facts and constants."""
    d = eng._dictionary
    mat = eng._mat
    occurrences: Counter[int] = Counter()
    for storage in eng._asserted_relations().values():
        for row in mat.relations[storage]:
            occurrences.update(row)
    occurrences.update(mat.constants)
    live = [i for i in d._ids.values() if d.refs[i]]
    assert {i: d.refs[i] for i in live} == dict(occurrences), "reference counts"
    assert sum(1 for n in d.refs if n) == len(live), "a counted id lost its entry"
    facts = {tag(d.values[i]) for i in occurrences}
    assert {tag(d.values[i]) for i in live} == facts
    assert facts >= constants
    assert d.live() == len(live)
    for rel in mat.relations.values():  # derived tuples hold live ids only
        for row in rel:
            assert all(d.refs[i] for i in row), f"{rel.name}{row} holds a dead id"
    for i in d.free:
        assert d.values[i] is FREED and not d.refs[i]
    assert len(set(d.free)) == len(d.free)


def decoded(change: Change) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    return {tag_tuple(t) for t in change.added}, {tag_tuple(t) for t in change.removed}


def expected_changes(before: Tagged, after: Tagged) -> dict[str, tuple[set[Any], set[Any]]]:
    out = {}
    for rel in before.keys() | after.keys():
        old, new = before.get(rel, set()), after.get(rel, set())
        if old != new:
            out[rel] = (new - old, old - new)
    return out


@st.composite
def churn_cases(draw: st.DrawFn) -> tuple[GenProgram, list[Batch], list[int]]:
    prog = draw(programs())
    batches = draw(churn_streams(prog))
    peeks = draw(st.lists(st.integers(0, 2), min_size=len(batches), max_size=len(batches)))
    return prog, batches, peeks


@settings(max_examples=examples(200), deadline=None, suppress_health_check=_HEALTH)
@given(churn_cases(), st.integers(1, 6), st.booleans())
def test_churn_keeps_views_exact_and_the_dictionary_to_live_values(
    case: tuple[GenProgram, list[Batch], list[int]], era_keep: int, bulk: bool
) -> None:
    prog, batches, peeks = case
    rules = list(prog.rules)
    constants = program_constants(prog)
    with eager(era_keep, bulk):
        eng = Engine(prog.source)
        check_dictionary(eng, constants)
        known = prog.relations()
        state: dict[str, set[tuple[Any, ...]]] = {}
        previous = {rel: t for rel, t in evaluate_tagged(rules).items() if rel in known}
        held: list[tuple[int, dict[str, Change], dict[str, tuple[set[Any], set[Any]]]]] = []
        for i, (batch, peek) in enumerate(zip(batches, peeks, strict=True)):
            pending = [  # lookups are decoded when made, not when read
                (rel, eng.lookup(rel, (None,) * prog.arities[rel]), set(eng.query(rel)))
                for rel in sorted(known)
                if rel in prog.arities
            ]
            changes = eng.update(insert=batch.insert, delete=batch.delete)
            for rel, rows, want in pending:
                assert {tag_tuple(t) for t in rows} == {tag_tuple(t) for t in want}, rel
            state = apply_batch(state, batch)
            known |= set(batch.insert) | set(batch.delete)
            model = evaluate_tagged(rules, state)
            expected = {rel: model.get(rel, set()) for rel in known}
            assert snapshot(eng, known) == expected, f"after batch {i}"
            check_dictionary(eng, constants)
            want = expected_changes(previous, expected)
            assert set(changes) == set(want), f"batch {i}: changed relations"
            if peek == 1:  # half decoded now, the other half at the end
                for rel, change in changes.items():
                    assert {tag_tuple(t) for t in change.added} == want[rel][0]
            elif peek == 2:
                check_changes(changes, previous, expected, f"batch {i}")
            held.append((i, changes, want))
            previous = expected
        for i, changes, want in held:  # ids freed and reused since: eras decode them
            assert {rel: decoded(c) for rel, c in changes.items()} == want, f"batch {i}"


@settings(max_examples=examples(80), deadline=None, suppress_health_check=_HEALTH)
@given(st.data())
def test_replace_pins_the_new_constants_and_releases_the_old(data: st.DataObject) -> None:
    old, new = data.draw(program_pairs())
    before = data.draw(churn_streams(old, max_batches=4))
    after = data.draw(churn_streams(new, max_batches=3))
    with eager(bulk=data.draw(st.booleans())):
        eng = Engine(old.source)
        state: dict[str, set[tuple[Any, ...]]] = {}
        for batch in before:
            eng.update(insert=batch.insert, delete=batch.delete)
            state = apply_batch(state, batch)
        derived = set(new.derived)
        old_model = evaluate_tagged(list(old.rules), state)
        replaced = evaluate_tagged(list(new.rules), state)
        changes = eng.replace(new.source)
        check_dictionary(eng, program_constants(new))
        for batch in after:  # old constants are reclaimed, their ids reused
            eng.update(insert=batch.insert, delete=batch.delete)
            state = apply_batch(state, batch)
            check_dictionary(eng, program_constants(new))
        new_model = evaluate_tagged(list(new.rules), state)
        known = new.relations() | {rel for rel, rows in state.items() if rows}
        assert snapshot(eng, known) == {rel: new_model.get(rel, set()) for rel in known}
        check_changes(  # decoded only now, through the era of the replacement
            changes,
            {rel: old_model.get(rel, set()) for rel in derived},
            {rel: replaced.get(rel, set()) for rel in derived},
            "replace",
        )


# -- examples ------------------------------------------------------------------------------------

PATHS = """
path(X, Y) :- edge(X, Y).
path(X, Z) :- path(X, Y), edge(Y, Z).
reach("root", Y) :- path(Y, "root").
"""


def _chain(prefix: str, n: int) -> list[tuple[str, str]]:
    return [(f"{prefix}{k}", f"{prefix}{k + 1}") for k in range(n)]


def test_retracting_everything_reclaims_every_value_and_reuses_ids() -> None:
    eng = Engine(PATHS)
    base = len(eng._dictionary)  # the constants
    peak = 0
    for cycle in range(3):
        facts = {"edge": [(f"c{cycle}-{k}", f"d{cycle}-{k}") for k in range(5000)]}
        eng.update(insert=facts)
        assert eng.stats()["dictionary_values"] == base + 10_000
        peak = peak or len(eng._dictionary.values)
        assert len(eng._dictionary.values) <= peak, "ids of earlier cycles are reused"
        eng.update(delete=facts)
        assert eng.stats()["dictionary_values"] == base
        assert eng.query("edge") == set() and eng.query("path") == set()
    eng.update(insert={"edge": [("a", "b")]})  # the next update reclaims the last batch
    assert len(eng._dictionary) == base + 2
    assert len(eng._dictionary.values) < 100, "free ids at the end are cut off"
    assert eng.query("path") == {("a", "b")}
    assert eng.contains("path", ("a", "b")) and not eng.contains("path", ("c0-1", "d0-1"))


def test_a_rejected_batch_leaves_no_value_behind() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b")]})
    before = (len(eng._dictionary), eng._dictionary.live(), list(eng._dictionary.refs))
    for rows in ([("new1", "new2"), ("new3", 1.5)], [("x", "y")] * 3 + [("new4", None)] * 9):
        with pytest.raises(InvalidValueError):
            eng.update(insert={"edge": rows})
    assert (len(eng._dictionary), eng._dictionary.live()) == before[:2]
    assert eng._dictionary.refs[: len(before[2])] == before[2]
    assert all(v is FREED for v in eng._dictionary.values[len(before[2]) :])
    eng.update(insert={"edge": [("new1", "b")]})  # a rolled back value comes back fine
    assert eng.query("path") == {("a", "b"), ("new1", "b")}


def test_a_value_retracted_and_asserted_again_before_reclamation_keeps_its_id() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b"), ("b", "c")]})
    ident = eng._dictionary.lookup("c")
    eng.update(delete={"edge": [("b", "c")]})
    assert eng._dictionary.dead == [ident] and not eng.contains("edge", ("b", "c"))
    eng.update(insert={"edge": [("c", "d")]})
    assert eng._dictionary.lookup("c") == ident and eng._dictionary.refs[ident] == 1
    with eager():
        eng.update(insert={"edge": [("x", "y")]})  # reclaims: "c" is back, not freed
    assert eng.query("path") >= {("c", "d"), ("x", "y")}
    assert eng._dictionary.lookup("c") == ident


def test_changes_held_across_reclamation_decode_the_values_they_saw() -> None:
    with eager(era_keep=10**9):
        eng = Engine(PATHS)
        load = eng.update(insert={"edge": _chain("a", 30)})  # bulk: relation snapshots
        gone = eng.update(delete={"edge": _chain("a", 30)})
        later = [eng.update(insert={"edge": _chain(f"z{k}-", 5)}) for k in range(20)]
        assert eng._dictionary.era.values is eng._dictionary.values
        # every id of the first two updates was freed and most were reused since
        assert not {eng._dictionary.values[i] for i in range(len(eng._dictionary.values))} & {
            f"a{k}" for k in range(31)
        }
        assert load["edge"].added == set(_chain("a", 30)) == gone["edge"].removed
        assert len(load["path"].added) == 30 * 31 // 2 == len(gone["path"].removed)
        assert later[0]["path"].added >= set(_chain("z0-", 5))


def test_eras_held_for_long_keep_a_copy_instead_of_every_graveyard() -> None:
    with eager(era_keep=50):
        eng = Engine(PATHS)
        held = eng.update(insert={"edge": _chain("h", 10)})
        for k in range(40):
            facts = {"edge": _chain(f"c{k}-", 10)}
            eng.update(insert=facts)
            eng.update(delete=facts)
        eras = [held["edge"]._era]
        while eras[-1] is not None and eras[-1].base is None:
            eras.append(eras[-1].next)
        assert eras[-1] is not None, "a sealed era ends the chain"
        kept = sum(len(e.graveyard) for e in eras if e is not None)
        assert kept <= 50 + 2 * 20, "graveyards are bounded by the sealing"
        assert held["edge"].added == set(_chain("h", 10))


def test_mass_retraction_shrinks_the_maps_in_place() -> None:
    eng = Engine(".on_demand far.\nfar(X, Y) :- edge(X, Z), edge(Z, Y).\n" + PATHS)
    facts = {"edge": [(f"u{k}", f"v{k % 7}") for k in range(20_000)]}
    eng.update(insert=facts)
    assert eng.contains("far", ("u1", "v1")) is False
    ids, index = eng._dictionary._ids, eng._mat.relations["edge"].indexes
    maps = {cols: idx.map for cols, idx in index.items()}
    big = sys.getsizeof(ids), {c: sys.getsizeof(m) for c, m in maps.items()}
    eng.update(delete={"edge": facts["edge"][:19_990]})
    eng.update(insert={"edge": [("v1", "w")]})  # reclaims
    assert sys.getsizeof(ids) * 8 < big[0]
    assert all(sys.getsizeof(m) * 8 < big[1][c] for c, m in maps.items())
    assert all(index[c].map is m for c, m in maps.items()), "same objects: plans hold them"
    assert eng._dictionary._ids is ids
    assert eng.query("edge") == {*facts["edge"][19_990:], ("v1", "w")}
    assert eng.contains("far", ("u19993", "w"))  # 19993 % 7 == 1: checks still see the maps
    assert not eng.contains("far", ("u5", "w"))


def test_a_dead_value_not_reclaimed_yet_is_in_no_answer() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b"), ("b", "c")]})
    eng.update(delete={"edge": [("b", "c")]})
    assert eng._dictionary.lookup("c") is not None  # dead, listed, not reclaimed
    assert not eng.contains("path", ("a", "c")) and not eng.contains("edge", ("b", "c"))
    assert list(eng.lookup("path", (None, "c"))) == []
    assert not eng.explain("path", ("a", "c")).present
    assert eng.stats()["dictionary_values"] == len(eng._dictionary) - 1
    assert eng.update(delete={"edge": [("b", "c")]}) == {}


def test_compaction_keeps_derivation_counts_and_row_sets() -> None:
    with eager():
        eng = Engine("p(X) :- e(X, Y).\nr(X) :- f(X), !p(X).")
        eng.update(insert={"e": [(k, j) for k in range(40) for j in range(2)]})
        eng.update(insert={"f": [(k,) for k in range(40)]})
        sizes = [sys.getsizeof(eng._mat.relations[r]._rows) for r in ("p", "f")]
        counts = eng._mat.relations["p"].counts
        assert len(counts) == 40  # every p row has two derivations
        # p and f shrink to a fifth: compacted (counts included), two derivations left each
        eng.update(delete={"e": [(k, j) for k in range(8, 40) for j in range(2)]})
        eng.update(delete={"f": [(k,) for k in range(8, 40)]})
        after = [sys.getsizeof(eng._mat.relations[r]._rows) for r in ("p", "f")]
        assert all(a < b for a, b in zip(after, sizes, strict=True))
        assert eng._mat.relations["p"].counts is counts and len(counts) == 8
        eng.update(delete={"e": [(k, 0) for k in range(8)]})
        assert eng.query("p") == {(k,) for k in range(8)}
        eng.update(delete={"e": [(k, 1) for k in range(4)]})
        assert eng.query("p") == {(k,) for k in range(4, 8)}
        assert eng.query("r") == {(k,) for k in range(4)}
