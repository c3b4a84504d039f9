"""Storage layer (``rune.ivm.store``) against a plain set of rows, and the engine on top of it
with tiny group limits (so that tuple groups turn into sets and back under real updates).

A relation of arity >= 2 keeps no row set: its indexes (one of them primary) hold the rows as
key -> group of items. These tests drive random insertions and removals through
:class:`Relation` and check every read path (membership, iteration, each index's groups,
``present``/``absent``, ``insert_new``, snapshots, old-version views) against a ``set``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.ivm import Engine, store
from rune.ivm.delta import Delta, OldIndexView
from rune.ivm.index import pack, unpack
from rune.ivm.store import Relation
from rune.ivm.values import MAX_IDS, Dictionary, EntityRef

from .programs import Batch, GenProgram, examples, programs, update_streams
from .test_incremental_property import run_stream

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]

IDS = st.integers(min_value=0, max_value=5)  # few ids: groups fill up and share keys


@contextmanager
def tiny_groups(limit: int = 2, bulk: int = 2) -> Iterator[None]:
    """A group limit small enough for random data to cross it (list -> set), inserts of
    more than ``bulk`` rows into an empty relation take the one-pass build, and relations
    that shrink to a quarter of their peak are compacted."""
    with (
        mock.patch.object(store, "BULK_ROWS", bulk),
        mock.patch.object(store, "GROUP_LIMIT", limit),
        mock.patch.object(store, "COMPACT_ROWS", 2),  # removals compact the containers
    ):
        yield


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, tuple[int, ...], list[tuple[int, ...]]]:
    """(arity, primary columns, other index columns) of a stored relation."""
    arity = draw(st.integers(min_value=1, max_value=3))
    proper = [tuple(c for c in range(arity) if mask >> c & 1) for mask in range(1, 2**arity - 1)]
    if not proper:
        return arity, (), []
    primary = draw(st.sampled_from(proper))
    others = draw(st.lists(st.sampled_from(proper), max_size=3, unique=True))
    return arity, primary, [c for c in others if c != primary]


def _ops(arity: int) -> st.SearchStrategy[list[tuple[str, list[tuple[int, ...]]]]]:
    rows = st.lists(st.tuples(*[IDS] * arity), max_size=8)
    kinds = st.sampled_from(["insert", "remove", "insert_new"])
    return st.lists(st.tuples(kinds, rows), max_size=25)


def check_relation(rel: Relation, expected: set[tuple[int, ...]]) -> None:
    assert len(rel) == len(expected)
    assert set(rel) == expected and sorted(rel) == sorted(expected)  # iteration: no repeats
    probes = expected | {(9,) * rel.arity, (0,) * rel.arity, (5,) * rel.arity}
    for row in probes:
        assert (row in rel) == (row in expected)
    assert rel.present(probes) == probes & expected
    assert rel.absent(probes) == probes - expected
    for cols, idx in rel.indexes.items():
        groups: dict[object, set[tuple[int, ...]]] = {}
        for row in expected:
            groups.setdefault(idx.key(row), set()).add(row)
        assert set(idx.map) == set(groups), f"keys of index {cols}"
        for key, rows in groups.items():
            assert sorted(idx.full_rows(key)) == sorted(rows), f"group {key} of {cols}"
            group = idx.map[key]
            assert type(group) in (tuple, list, set)
            if type(group) is tuple:  # a group of one item may be a 1-tuple, never more
                assert len(group) == 1
            if type(group) is list:  # beyond the limit a group must be a set
                assert len(group) <= idx.limit


@settings(max_examples=examples(300), deadline=None, suppress_health_check=_HEALTH)
@given(st.data())
def test_relation_equals_a_set_of_rows(data: st.DataObject) -> None:
    arity, primary, others = data.draw(shapes())
    counted = data.draw(st.booleans())
    with tiny_groups():
        rel = Relation("r", arity, counted=counted, primary=primary or None)
        for cols in others:
            rel.index(cols)
        expected: set[tuple[int, ...]] = set()
        snapshots: list[tuple[store.Snapshot, set[tuple[int, ...]]]] = []
        for op, rows in data.draw(_ops(arity)):
            if op == "insert":
                fresh = set(rows) - expected
                rel.insert(fresh)
                expected |= fresh
            elif op == "insert_new":
                added = rel.insert_new(set(rows))
                assert sorted(added) == sorted(set(rows) - expected)
                expected |= set(rows)
            else:
                gone = set(rows) & expected
                rel.remove(gone)
                expected -= gone
            check_relation(rel, expected)
            if data.draw(st.booleans()):
                snapshots.append((rel.snapshot(), set(expected)))
        for snap, rows_then in snapshots:  # snapshots do not see later changes
            assert len(snap) == len(rows_then)
            assert set(snap) == rows_then and set(snap) == rows_then  # iterable twice


@settings(max_examples=examples(200), deadline=None, suppress_health_check=_HEALTH)
@given(st.data())
def test_old_index_view_is_the_index_before_the_delta(data: st.DataObject) -> None:
    arity, primary, others = data.draw(shapes())
    if arity < 2:
        return
    rows = st.sets(st.tuples(*[IDS] * arity), max_size=12)
    before, after = data.draw(rows), data.draw(rows)
    with tiny_groups():
        rel = Relation("r", arity, primary=primary)
        rel.insert(before)
        indexes = [rel.index(cols) for cols in {primary, *others}]
        delta = Delta(after - before, before - after)
        rel.remove(delta.minus)
        rel.insert(delta.plus)
        for idx in indexes:
            view = OldIndexView(idx, delta)
            keys = {idx.key(r) for r in before | after} | {pack([7] * len(idx.cols))}
            for key in keys:
                old_items = {idx.ops.item(r) for r in before if idx.key(r) == key}
                got = list(view.get(key))
                assert sorted(got) == sorted(old_items), f"old group {key} of {idx.cols}"


@given(st.lists(st.integers(min_value=0, max_value=MAX_IDS - 1), min_size=1, max_size=4))
def test_pack_unpack_round_trip(ids: list[int]) -> None:
    assert unpack(pack(ids), len(ids)) == tuple(ids)


def test_packed_keys_differ_for_different_ids() -> None:
    keys = {pack([a, b]) for a in range(40) for b in range(40)}
    assert len(keys) == 1600


# -- the engine with tiny groups ----------------------------------------------------------------


@st.composite
def program_and_stream(draw: st.DrawFn) -> tuple[GenProgram, list[Batch]]:
    prog = draw(programs())
    return prog, draw(update_streams(prog))


@settings(max_examples=examples(150), deadline=None, suppress_health_check=_HEALTH)
@given(program_and_stream())
def test_engine_with_tiny_groups_equals_evaluation_from_scratch(
    case: tuple[GenProgram, list[Batch]],
) -> None:
    prog, batches = case
    with tiny_groups(limit=1, bulk=1):
        run_stream(prog, batches)


def test_bulk_load_changes_do_not_see_later_updates() -> None:
    eng = Engine(
        """
        role("admin").
        reach(X, Y) :- edge(X, Y).
        reach(X, Z) :- reach(X, Y), edge(Y, Z).
        """
    )
    first = eng.update(insert={"edge": [("a", "b"), ("b", "c")]})  # bulk: edge, reach empty
    eng.update(insert={"edge": [("c", "d")]}, delete={"edge": [("a", "b")]})
    assert first["edge"].added == {("a", "b"), ("b", "c")}
    assert first["reach"].added == {("a", "b"), ("b", "c"), ("a", "c")}
    assert first["reach"].removed == frozenset() and len(first["reach"]) == 3
    assert set(first) == {"edge", "reach"}  # the untouched stratum (role) is not reported
    assert eng.query("reach") == {("b", "c"), ("b", "d"), ("c", "d")}


def test_bulk_load_into_a_new_relation_after_others_hold_data() -> None:
    eng = Engine("two(X, Y) :- one(X), other(Y).  lone(X) :- single(X).")
    eng.update(insert={"one": [("a",)], "other": [("b",)]})
    changes = eng.update(insert={"single": [(1,), (2,)]})  # single and lone empty: bulk
    assert changes["lone"].added == {(1,), (2,)} and changes["single"].added == {(1,), (2,)}
    assert set(changes) == {"single", "lone"}
    assert eng.query("two") == {("a", "b")}


# -- encoding many rows at once -------------------------------------------------------------------

VALUES = st.one_of(
    st.sampled_from(["a", "b", "", "long" * 3]),
    st.builds(EntityRef, st.sampled_from(["User", "App::Group"]), st.sampled_from(["u1", "x"])),
    st.integers(min_value=-3, max_value=3),
    st.booleans(),
    st.tuples(st.just("User"), st.just("u1")),  # a plain tuple: invalid, equals an EntityRef
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.lists(VALUES, min_size=2, max_size=2), max_size=6), st.booleans())
def test_encode_many_agrees_with_row_by_row(rows: list[list[object]], lookup_only: bool) -> None:
    bulk, single = Dictionary(), Dictionary()
    for d in (bulk, single):
        d.encode_row(["a", EntityRef("User", "u1")])  # some values known beforehand
    got = bulk.encode_many(rows, 2, lookup_only)
    if got is None:  # not the fast path: row by row decides (and raises on a bad value)
        return
    assert all(type(v) in (str, EntityRef) for row in rows for v in row)
    if lookup_only:
        assert got == {tuple(single.lookup(v) for v in row) for row in rows}  # type: ignore[arg-type]
    else:
        assert got == {single.encode_row(row) for row in rows}
        assert bulk.values == single.values  # same ids, in order of first appearance


def test_encode_many_declines_invalid_rows() -> None:
    d = Dictionary()
    assert d.encode_many([("a",)], 2) is None  # wrong length
    assert d.encode_many([["a", 1.5]], 2) is None  # not a str or entity
    assert d.encode_many([("a", "x" * 70_000)], 2) is None  # too long: row by row raises
    assert d.encode_many([("a", EntityRef("", "x"))], 2) is None  # empty entity type
    assert d.encode_many([("a", "b")], 2, lookup_only=True) is None  # unknown values
    assert len(d) == 0  # nothing was assigned on the way
