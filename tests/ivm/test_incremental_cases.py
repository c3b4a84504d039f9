"""Hand-written regressions for the classic hard cases of incremental view maintenance.

Each test states the expected contents and the expected net changes literally.
"""

from __future__ import annotations

import random

import pytest

from rune.ivm import DatalogError, Engine, EntityRef

PATH = """
path(X, Y) :- edge(X, Y).
path(X, Z) :- path(X, Y), edge(Y, Z).
"""


def closure(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    paths = set(edges)
    while True:
        new = {(x, w) for x, y in paths for z, w in edges if y == z} - paths
        if not new:
            return paths
        paths |= new


def added(changes: dict, rel: str) -> set:
    return set(changes[rel].added) if rel in changes else set()


def removed(changes: dict, rel: str) -> set:
    return set(changes[rel].removed) if rel in changes else set()


# -- recursion: deletions inside cycles (DRed over-deletion and re-derivation) ---------------


def test_delete_edge_in_cycle() -> None:
    eng = Engine(PATH)
    edges = {("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}
    eng.update(insert={"edge": sorted(edges)})
    full = closure(edges)
    assert eng.query("path") == full
    assert len(full) == 12  # a, b, c reach each other and themselves, and d

    changes = eng.update(delete={"edge": [("b", "c")]})
    rest = edges - {("b", "c")}
    assert eng.query("path") == closure(rest) == {("a", "b"), ("c", "a"), ("c", "b"), ("c", "d")}
    assert removed(changes, "path") == full - closure(rest)
    assert added(changes, "path") == set()
    assert set(changes["edge"].removed) == {("b", "c")}

    changes = eng.update(insert={"edge": [("b", "c")]})
    assert eng.query("path") == full
    assert added(changes, "path") == full - closure(rest)
    assert removed(changes, "path") == set()


def test_cycle_loses_its_only_support() -> None:
    # b and c support each other through a cycle; only the edge from a makes them reachable.
    eng = Engine('reach(X) :- start(X).\nreach(Y) :- reach(X), edge(X, Y).\nstart("a").')
    eng.update(insert={"edge": [("a", "b"), ("b", "c"), ("c", "b"), ("c", "c")]})
    assert eng.query("reach") == {("a",), ("b",), ("c",)}
    changes = eng.update(delete={"edge": [("a", "b")]})
    assert eng.query("reach") == {("a",)}
    assert removed(changes, "reach") == {("b",), ("c",)}
    assert added(changes, "reach") == set()


def test_over_deleted_tuple_is_rederived_through_other_cycle() -> None:
    eng = Engine(PATH)
    edges = {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("b", "d")}
    eng.update(insert={"edge": sorted(edges)})
    changes = eng.update(delete={"edge": [("b", "a")]})
    rest = edges - {("b", "a")}
    assert eng.query("path") == closure(rest)
    # (c, b) survives through c -> a -> b; (b, b) and (b, a) die.
    assert ("c", "b") in eng.query("path")
    assert removed(changes, "path") == closure(edges) - closure(rest)
    assert ("c", "b") not in removed(changes, "path")


def test_self_loop_deletion() -> None:
    eng = Engine(PATH)
    eng.update(insert={"edge": [("a", "a"), ("a", "b")]})
    assert eng.query("path") == {("a", "a"), ("a", "b")}
    changes = eng.update(delete={"edge": [("a", "a")]})
    assert eng.query("path") == {("a", "b")}
    assert removed(changes, "path") == {("a", "a")}


# -- alternative derivations (counting) --------------------------------------------------------


def test_delete_one_of_two_derivations_non_recursive() -> None:
    eng = Engine("has_out(X) :- edge(X, _).\nboth(X) :- edge(X, Y), edge(Y, X).")
    eng.update(insert={"edge": [("a", "b"), ("a", "c"), ("b", "a"), ("c", "a")]})
    assert eng.query("has_out") == {("a",), ("b",), ("c",)}
    changes = eng.update(delete={"edge": [("a", "b")]})
    assert eng.query("has_out") == {("a",), ("b",), ("c",)}
    assert "has_out" not in changes
    assert eng.query("both") == {("a",), ("c",)}
    assert removed(changes, "both") == {("b",)}
    changes = eng.update(delete={"edge": [("a", "c")]})
    assert eng.query("has_out") == {("b",), ("c",)}
    assert removed(changes, "has_out") == {("a",)}
    assert eng.query("both") == set()


def test_delete_one_of_two_derivations_recursive() -> None:
    eng = Engine(PATH)
    eng.update(insert={"edge": [("a", "b"), ("b", "c"), ("a", "c")]})
    changes = eng.update(delete={"edge": [("a", "c")]})
    assert eng.query("path") == {("a", "b"), ("b", "c"), ("a", "c")}
    assert "path" not in changes
    changes = eng.update(delete={"edge": [("b", "c")]})
    assert eng.query("path") == {("a", "b")}
    assert removed(changes, "path") == {("b", "c"), ("a", "c")}


def test_same_tuple_from_two_rules() -> None:
    eng = Engine("q(X) :- a(X).\nq(X) :- b(X).")
    eng.update(insert={"a": [("x",)], "b": [("x",)]})
    changes = eng.update(delete={"a": [("x",)]})
    assert eng.query("q") == {("x",)} and "q" not in changes
    changes = eng.update(delete={"b": [("x",)]})
    assert eng.query("q") == set() and removed(changes, "q") == {("x",)}


# -- negation ----------------------------------------------------------------------------------


def test_negation_flips_when_lower_relation_changes() -> None:
    eng = Engine(
        "allowed(U) :- member(U, G), good(G).\n"
        "blocked(U) :- user(U), !allowed(U).\n"
        "alert(U) :- blocked(U), admin(U).\n"
    )
    eng.update(insert={"user": [("u",), ("v",)], "member": [("u", "g")], "admin": [("u",)]})
    assert eng.query("blocked") == {("u",), ("v",)}
    assert eng.query("alert") == {("u",)}
    changes = eng.update(insert={"good": [("g",)]})
    assert eng.query("blocked") == {("v",)}
    assert removed(changes, "blocked") == {("u",)} and added(changes, "blocked") == set()
    assert removed(changes, "alert") == {("u",)}
    changes = eng.update(delete={"good": [("g",)]})
    assert eng.query("blocked") == {("u",), ("v",)}
    assert added(changes, "blocked") == {("u",)}
    assert added(changes, "alert") == {("u",)}


def test_negation_of_recursive_relation() -> None:
    eng = Engine(PATH + "unreach(X, Y) :- node(X), node(Y), !path(X, Y), X != Y.\n")
    eng.update(insert={"node": [("a",), ("b",), ("c",)], "edge": [("a", "b"), ("b", "c")]})
    assert eng.query("unreach") == {("b", "a"), ("c", "a"), ("c", "b")}
    changes = eng.update(insert={"edge": [("c", "a")]})
    assert eng.query("unreach") == set()
    assert removed(changes, "unreach") == {("b", "a"), ("c", "a"), ("c", "b")}
    changes = eng.update(delete={"edge": [("a", "b")]})
    assert eng.query("unreach") == {("a", "b"), ("a", "c"), ("c", "b")}
    assert added(changes, "unreach") == {("a", "b"), ("a", "c"), ("c", "b")}


def test_negation_with_anonymous_variable() -> None:
    eng = Engine("leaf(X) :- node(X), !edge(X, _).")
    eng.update(insert={"node": [("a",), ("b",)], "edge": [("a", "b")]})
    assert eng.query("leaf") == {("b",)}
    changes = eng.update(insert={"edge": [("b", "z")]})
    assert eng.query("leaf") == set() and removed(changes, "leaf") == {("b",)}
    changes = eng.update(delete={"edge": [("a", "b"), ("b", "z")]})
    assert eng.query("leaf") == {("a",), ("b",)}


# -- a relation with rules and base facts --------------------------------------------------------


def test_relation_with_rules_and_base_facts() -> None:
    eng = Engine(PATH)
    changes = eng.update(insert={"path": [("x", "a")], "edge": [("a", "b")]})
    assert eng.query("path") == {("x", "a"), ("a", "b"), ("x", "b")}
    assert added(changes, "path") == {("x", "a"), ("a", "b"), ("x", "b")}
    # A base fact that is also derived survives the loss of its derivation...
    changes = eng.update(insert={"path": [("a", "b")]})
    assert "path" not in changes
    changes = eng.update(delete={"edge": [("a", "b")]})
    assert eng.query("path") == {("x", "a"), ("a", "b")}
    assert removed(changes, "path") == {("x", "b")}
    # ...and base facts of a derived relation feed its rules like derived tuples.
    changes = eng.update(insert={"edge": [("b", "c")]})
    assert eng.query("path") == {("x", "a"), ("a", "b"), ("b", "c"), ("a", "c")}
    assert added(changes, "path") == {("b", "c"), ("a", "c")}
    changes = eng.update(delete={"path": [("a", "b")], "edge": [("b", "c")]})
    assert eng.query("path") == {("x", "a")}
    assert removed(changes, "path") == {("a", "b"), ("b", "c"), ("a", "c")}
    eng.update(insert={"edge": [("a", "b")]})
    changes = eng.update(delete={"path": [("x", "b")]})  # derived, never inserted: no effect
    assert eng.query("path") == {("x", "a"), ("a", "b"), ("x", "b")}
    assert "path" not in changes


# -- group hierarchies -------------------------------------------------------------------------

GROUPS = """
in_group(U, G) :- member(U, G).
in_group(U, H) :- in_group(U, G), subgroup(G, H).
can_read(U, D) :- in_group(U, G), reader(G, D).
"""


def test_diamond_group_hierarchy_retraction() -> None:
    alice = EntityRef("User", "alice")
    eng_, dev, ops, every = (EntityRef("Group", g) for g in ("eng", "dev", "ops", "all"))
    doc = EntityRef("Doc", "d")
    eng = Engine(GROUPS)
    eng.update(
        insert={
            "member": [(alice, eng_)],
            "subgroup": [(eng_, dev), (eng_, ops), (dev, every), (ops, every)],
            "reader": [(every, doc)],
        }
    )
    everything = {(alice, g) for g in (eng_, dev, ops, every)}
    assert eng.query("in_group") == everything
    assert eng.query("can_read") == {(alice, doc)}

    changes = eng.update(delete={"subgroup": [(dev, every)]})
    assert eng.query("in_group") == everything
    assert "in_group" not in changes and "can_read" not in changes

    changes = eng.update(delete={"subgroup": [(ops, every)]})
    assert eng.query("in_group") == everything - {(alice, every)}
    assert removed(changes, "in_group") == {(alice, every)}
    assert removed(changes, "can_read") == {(alice, doc)}

    changes = eng.update(insert={"subgroup": [(dev, every)]}, delete={"member": [(alice, eng_)]})
    assert eng.query("in_group") == set()
    assert removed(changes, "in_group") == everything - {(alice, every)}
    assert "can_read" not in changes


def test_cyclic_groups_with_retraction() -> None:
    alice = EntityRef("User", "alice")
    a, b, c = (EntityRef("Group", g) for g in "abc")
    eng = Engine(GROUPS)
    eng.update(insert={"member": [(alice, a)], "subgroup": [(a, b), (b, c), (c, a)]})
    assert eng.query("in_group") == {(alice, a), (alice, b), (alice, c)}
    changes = eng.update(delete={"member": [(alice, a)]}, insert={"member": [(alice, c)]})
    assert eng.query("in_group") == {(alice, a), (alice, b), (alice, c)}
    assert "in_group" not in changes
    changes = eng.update(delete={"subgroup": [(b, c)]})
    assert eng.query("in_group") == {(alice, c), (alice, a), (alice, b)}
    changes = eng.update(delete={"subgroup": [(c, a)]})
    assert eng.query("in_group") == {(alice, c)}
    assert removed(changes, "in_group") == {(alice, a), (alice, b)}


# -- batches -----------------------------------------------------------------------------------


def test_batch_semantics_and_net_changes() -> None:
    eng = Engine(PATH)
    eng.update(insert={"edge": [("a", "b")]})
    # Deletions go first, so deleting and inserting the same fact leaves it present.
    changes = eng.update(insert={"edge": [("a", "b")]}, delete={"edge": [("a", "b")]})
    assert eng.query("edge") == {("a", "b")} and changes == {}
    # Re-inserting present facts and deleting absent ones changes nothing.
    changes = eng.update(insert={"edge": [("a", "b"), ("a", "b")]}, delete={"edge": [("x", "y")]})
    assert changes == {}
    # Insert and delete of different facts in one batch: only net changes are reported.
    changes = eng.update(insert={"edge": [("b", "c")]}, delete={"edge": [("a", "b")]})
    assert eng.query("path") == {("b", "c")}
    assert set(changes["path"].added) == {("b", "c")}
    assert set(changes["path"].removed) == {("a", "b")}


def test_bools_and_ints_stay_apart() -> None:
    # Python sets merge (1,) and (True,), so check membership through contains().
    eng = Engine("small(X) :- v(X), X < 3.\nsame(X, Y) :- v(X), v(Y), X = Y.\n")
    eng.update(insert={"v": [(1,), (True,), (2,), ("a",), (False,), (0,)]})
    assert eng.contains("small", (1,)) and eng.contains("small", (0,))
    assert not eng.contains("small", (True,)) and not eng.contains("small", (False,))
    assert eng.contains("same", (True, True)) and eng.contains("same", (1, 1))
    assert not eng.contains("same", (True, 1)) and not eng.contains("same", (0, False))
    assert all(type(x) is int for (x,) in eng.query("small"))
    changes = eng.update(delete={"v": [(True,)]})
    assert eng.contains("v", (1,)) and not eng.contains("v", (True,))
    assert eng.contains("same", (1, 1)) and not eng.contains("same", (True, True))
    assert {type(x) for (x, _) in changes["same"].removed} == {bool}


def test_constants_of_the_dialect() -> None:
    eng = Engine(
        'q(X) :- v(X), X != "a\\"b", X != -5, X != App::User::"x", X != false.\n'
        'p("a\\"b", -5, App::User::"x", false).\n'
    )
    eng.update(insert={"v": [('a"b',), (-5,), (EntityRef("App::User", "x"),), (False,), (7,)]})
    assert eng.query("p") == {('a"b', -5, EntityRef("App::User", "x"), False)}
    assert eng.query("q") == {(7,)}


def test_long_cycles_random_deletions_and_insertions() -> None:
    # A ring of 24 nodes with chords: every deletion over-deletes a lot that DRed must
    # re-derive (or that B/F must prove), and every insertion closes new cycles.
    rnd = random.Random(20261128)
    nodes = [f"n{i}" for i in range(24)]
    edges = {(nodes[i], nodes[(i + 1) % 24]) for i in range(24)}
    edges |= {(rnd.choice(nodes), rnd.choice(nodes)) for _ in range(6)}
    eng = Engine(PATH)
    eng.update(insert={"edge": sorted(edges)})
    assert eng.query("path") == closure(edges)
    for step in range(30):
        before = closure(edges)
        gone = set(rnd.sample(sorted(edges), min(2, len(edges))))
        new = {(rnd.choice(nodes), rnd.choice(nodes)) for _ in range(rnd.randint(0, 3))}
        changes = eng.update(delete={"edge": sorted(gone)}, insert={"edge": sorted(new)})
        edges = (edges - gone) | new
        after = closure(edges)
        assert eng.query("path") == after, f"step {step}"
        assert added(changes, "path") == after - before, f"step {step}"
        assert removed(changes, "path") == before - after, f"step {step}"


# -- errors leave the engine unchanged ---------------------------------------------------------


def test_rejected_batch_applies_nothing() -> None:
    eng = Engine(PATH)
    eng.update(insert={"edge": [("a", "b"), ("b", "c")]})
    before = eng.query("path")
    bad_batches = [
        {"insert": {"edge": [("c", "d"), ("x",)]}},  # arity
        {"insert": {"edge": [("c", "d"), ("x", 1.5)]}},  # not a value
        {"insert": {"edge": [("c", "d")]}, "delete": {"edge": [("a", "b"), (1, 2, 3)]}},
        {"insert": {"edge": [("c", "d")], "path": [("only_one",)]}},
    ]
    for batch in bad_batches:
        with pytest.raises(DatalogError):
            eng.update(**batch)
        assert eng.query("path") == before, batch
        assert eng.query("edge") == {("a", "b"), ("b", "c")}, batch
    changes = eng.update(insert={"edge": [("c", "d")]})
    assert added(changes, "path") == {("c", "d"), ("b", "d"), ("a", "d")}


def test_failed_replace_keeps_old_program() -> None:
    eng = Engine(PATH)
    eng.update(insert={"edge": [("a", "b"), ("b", "c")]})
    for bad in ("p(X) :- q(X", "p(X) :- !q(X).", "p(X) :- q(X), !p(X).", "edge(X) :- q(X)."):
        with pytest.raises(DatalogError):
            eng.replace(bad)
        assert eng.query("path") == {("a", "b"), ("b", "c"), ("a", "c")}
    changes = eng.update(delete={"edge": [("a", "b")]})
    assert removed(changes, "path") == {("a", "b"), ("a", "c")}
    changes = eng.replace("path(X, Y) :- edge(Y, X).")
    assert eng.query("path") == {("c", "b")}
    assert added(changes, "path") == {("c", "b")} and removed(changes, "path") == {("b", "c")}
