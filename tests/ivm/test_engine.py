"""Engine facade: the API contract of docs/design.md §4, bad input, queries, program changes."""

from __future__ import annotations

import pytest

from rune.ivm import (
    ArityError,
    Change,
    DatalogSyntaxError,
    Engine,
    EntityRef,
    InvalidValueError,
    SafetyError,
    UnknownRelationError,
)

PATHS = """
path(X, Y) :- edge(X, Y).
path(X, Z) :- path(X, Y), edge(Y, Z).
"""


def snapshot(eng: Engine) -> dict[str, set[tuple[object, ...]]]:
    return {
        name: eng.query(name) for name, info in eng.relations().items() if info.kind != "on_demand"
    }


def test_contract_example() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b"), ("b", "c")]})
    changes = eng.update(insert={"edge": [("c", "d")]}, delete={"edge": [("a", "b")]})
    assert changes["path"].added == {("c", "d"), ("b", "d")}
    assert changes["path"].removed == {("a", "b"), ("a", "c")}
    assert changes["edge"] == Change(frozenset({("c", "d")}), frozenset({("a", "b")}))
    assert eng.query("path") == {("b", "c"), ("b", "d"), ("c", "d")}


def test_facts_are_a_set() -> None:
    eng = Engine(PATHS)
    assert eng.update(insert={"edge": [("a", "b"), ("a", "b")]})["edge"].added == {("a", "b")}
    assert eng.update(insert={"edge": [("a", "b")]}) == {}
    assert eng.update(delete={"edge": [("x", "y")]}) == {}
    assert eng.update(delete={"edge": [("a", "zzz-never-seen")]}) == {}


def test_delete_then_insert_in_one_batch_leaves_the_fact() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b")]})
    assert eng.update(insert={"edge": [("a", "b")]}, delete={"edge": [("a", "b")]}) == {}
    assert eng.query("edge") == {("a", "b")}
    changes = eng.update(insert={"edge": [("b", "c")]}, delete={"edge": [("b", "c")]})
    assert changes["edge"].added == {("b", "c")}


def test_relation_without_rules_becomes_a_base_relation() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"audit": [("x", 1, True)]})
    assert eng.query("audit") == {("x", 1, True)}
    assert eng.relations()["audit"].kind == "base"
    assert eng.arity("audit") == 3
    with pytest.raises(ArityError):
        eng.update(insert={"audit": [("x", 1)]})


def test_asserted_facts_of_a_derived_relation_join_its_derivations() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b")], "path": [("z", "a")]})
    assert eng.query("path") == {("a", "b"), ("z", "a"), ("z", "b")}
    changes = eng.update(delete={"path": [("z", "a")]})
    assert changes["path"].removed == {("z", "a"), ("z", "b")}
    eng.update(insert={"path": [("a", "b")]})  # asserted and derived
    eng.update(delete={"edge": [("a", "b")]})
    assert eng.query("path") == {("a", "b")}


def test_values_bool_int_entity_are_kept_apart() -> None:
    eng = Engine("same(X) :- v(X), w(X).")
    alice = EntityRef("User", "alice")
    eng.update(
        insert={"v": [(1,), (True,), (alice,), ('User::"alice"',)], "w": [(True,), (alice,)]}
    )
    assert eng.query("same") == {(True,), (alice,)}
    assert eng.contains("v", (1,)) and eng.contains("v", (True,))
    assert not eng.contains("w", (1,))


@pytest.mark.parametrize(
    ("batch", "error", "fragment"),
    [
        ({"edge": [("a",)]}, ArityError, "arity 2"),
        ({"edge": [("a", 1.5)]}, InvalidValueError, "[0][1]: unsupported value of type float"),
        ({"edge": [("a", None)]}, InvalidValueError, "NoneType"),
        ({"edge": [("a", ["nested", ["list"]])]}, InvalidValueError, "list"),
        ({"edge": [("a", {"type": "User"})]}, InvalidValueError, "dict"),
        ({"edge": [("a", "x" * 70_000)]}, InvalidValueError, "exceeds the limit"),
        ({"edge": [("a", 2**64)]}, InvalidValueError, "64-bit"),
        ({"edge": ["ab"]}, InvalidValueError, "expected a tuple"),
        ({"edge": "ab"}, InvalidValueError, "iterable of rows"),
        ({"Edge": [("a", "b")]}, InvalidValueError, "invalid relation name"),
        ({"path@base": [("a", "b")]}, InvalidValueError, "invalid relation name"),
        ({"new": [("a",), ("a", "b")]}, ArityError, "arity 1"),
    ],
)
def test_bad_batch_is_rejected_whole(
    batch: dict[str, object], error: type[Exception], fragment: str
) -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b")]})
    before = snapshot(eng)
    good = {"edge": [("b", "c")]}
    with pytest.raises(error) as info:
        eng.update(
            insert={**good, **batch} if "edge" not in batch else batch,
            delete={"edge": [("a", "b")]},
        )  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert snapshot(eng) == before
    assert eng.arity("new") is None


def test_deep_nesting_is_rejected_without_recursion() -> None:
    value: object = "leaf"
    for _ in range(100_000):
        value = [value]
    with pytest.raises(InvalidValueError):
        Engine(PATHS).update(insert={"edge": [("a", value)]})  # type: ignore[dict-item]


def test_unknown_relation_queries() -> None:
    eng = Engine(PATHS)
    with pytest.raises(UnknownRelationError):
        eng.query("nope")
    with pytest.raises(UnknownRelationError):
        eng.contains("nope", ("a",))
    with pytest.raises(UnknownRelationError):
        eng.query("path@base")
    assert eng.query("path") == set()
    with pytest.raises(ArityError):
        eng.contains("path", ("a",))


def test_lookup_with_bound_columns() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b"), ("b", "c"), ("x", "c")]})
    assert set(eng.lookup("path", ("a", None))) == {("a", "b"), ("a", "c")}
    assert set(eng.lookup("path", (None, "c"))) == {("a", "c"), ("b", "c"), ("x", "c")}
    assert set(eng.lookup("path", ("a", "c"))) == {("a", "c")}
    assert set(eng.lookup("path", (None, None))) == eng.query("path")
    assert set(eng.lookup("path", ("never-seen", None))) == set()
    eng.update(delete={"edge": [("b", "c")]})  # the index built by lookup is maintained
    assert set(eng.lookup("path", (None, "c"))) == {("x", "c")}


ON_DEMAND = """
in_group(U, G) :- member(U, G).
in_group(U, G) :- in_group(U, H), subgroup(H, G).
can(U, D) :- in_group(U, G), grant(G, D), !blocked(U).
can(U, D) :- owner(U, D).
.on_demand can.
"""


def test_on_demand_relation_is_computed_at_lookup_time() -> None:
    eng = Engine(ON_DEMAND)
    changes = eng.update(
        insert={
            "member": [("ann", "eng"), ("bob", "ops")],
            "subgroup": [("eng", "all")],
            "grant": [("all", "d1"), ("ops", "d2")],
            "owner": [("bob", "d3")],
        }
    )
    assert "can" not in changes
    assert eng.relations()["can"].kind == "on_demand"
    assert eng.contains("can", ("ann", "d1"))
    assert not eng.contains("can", ("ann", "d2"))
    assert set(eng.lookup("can", ("bob", None))) == {("bob", "d2"), ("bob", "d3")}
    assert set(eng.lookup("can", (None, "d1"))) == {("ann", "d1")}
    assert eng.query("can") == {("ann", "d1"), ("bob", "d2"), ("bob", "d3")}
    eng.update(insert={"blocked": [("ann",)]})
    assert not eng.contains("can", ("ann", "d1"))


def test_on_demand_by_keyword() -> None:
    eng = Engine("two(X, Z) :- e(X, Y), e(Y, Z).", on_demand=["two"])
    eng.update(insert={"e": [(1, 2), (2, 3)]})
    assert eng.relations()["two"].kind == "on_demand"
    assert eng.query("two") == {(1, 3)}


def test_replace_keeps_facts_and_reports_derived_changes() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b"), ("b", "c")]})
    changes = eng.replace("path(X, Y) :- edge(X, Y).\nsym(X, Y) :- edge(Y, X).")
    assert changes["path"].removed == {("a", "c")} and not changes["path"].added
    assert changes["sym"].added == {("b", "a"), ("c", "b")}
    assert "edge" not in changes
    assert eng.query("edge") == {("a", "b"), ("b", "c")}
    eng.update(insert={"edge": [("c", "d")]})
    assert ("d", "c") in eng.query("sym")


def test_replace_failure_keeps_old_program() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [("a", "b")], "extra": [("x",)]})
    before = snapshot(eng)
    with pytest.raises(DatalogSyntaxError):
        eng.replace("path(X, Y) :- edge(X, Y)")
    with pytest.raises(SafetyError):
        eng.replace("path(X, Y) :- edge(X, Z).")
    with pytest.raises(ArityError, match="holds facts of arity 1"):
        eng.replace("p(X) :- extra(X, X).")
    assert snapshot(eng) == before
    eng.update(insert={"edge": [("b", "c")]})
    assert ("a", "c") in eng.query("path")


def test_replace_moves_asserted_facts_into_a_newly_derived_relation() -> None:
    eng = Engine("")
    eng.update(insert={"edge": [("a", "b")]})
    eng.replace(PATHS + "edge(X, Y) :- link(X, Y).")
    eng.update(insert={"link": [("b", "c")]})
    assert eng.query("path") == {("a", "b"), ("b", "c"), ("a", "c")}
    changes = eng.update(delete={"edge": [("a", "b")]})
    assert changes["path"].removed == {("a", "b"), ("a", "c")}


def test_program_facts() -> None:
    eng = Engine(
        'implies("owner", "editor"). implies("editor", "viewer").\n'
        "imp(X, Z) :- implies(X, Z). imp(X, Z) :- imp(X, Y), implies(Y, Z)."
    )
    assert eng.query("imp") == {("owner", "editor"), ("editor", "viewer"), ("owner", "viewer")}
    assert eng.update(delete={"implies": [("owner", "editor")]}) == {}  # program facts stay


def test_comparisons_compare_same_typed_values_only() -> None:
    eng = Engine("lt(X, Y) :- v(X), v(Y), X < Y.\neq(X, Y) :- v(X), v(Y), X = Y, X != 2.")
    eng.update(insert={"v": [(1,), (2,), ("a",), ("b",), (True,)]})
    assert eng.query("lt") == {(1, 2), ("a", "b")}
    assert eng.query("eq") == {(1, 1), ("a", "a"), ("b", "b"), (True, True)}


def test_stats_report_sizes() -> None:
    eng = Engine(PATHS)
    eng.update(insert={"edge": [(i, i + 1) for i in range(20)]})
    stats = eng.stats()
    assert stats["tuples"] == len(eng.query("edge")) + len(eng.query("path"))
    assert stats["bytes"] > 0 and stats["bytes_per_tuple"] > 0


def test_replace_reuses_unchanged_strata_and_recomputes_the_rest() -> None:
    eng = Engine(PATHS + 'far(X) :- path(X, _), !near(X).\nnear(X) :- edge(X, "b").')
    eng.update(insert={"edge": [("a", "b"), ("b", "c"), ("c", "d")]})
    path_rel = eng._mat.relations["path"]
    changes = eng.replace(PATHS + 'far(X) :- path(X, _), !near(X).\nnear(X) :- edge(X, "c").')
    assert eng._mat.relations["path"] is path_rel  # same rules, same inputs: moved, not rebuilt
    assert changes["near"] == Change(frozenset({("b",)}), frozenset({("a",)}))
    assert changes["far"] == Change(frozenset({("a",)}), frozenset({("b",)}))
    assert "path" not in changes and "edge" not in changes
    fresh = Engine(PATHS + 'far(X) :- path(X, _), !near(X).\nnear(X) :- edge(X, "c").')
    fresh.update(insert={"edge": [("a", "b"), ("b", "c"), ("c", "d")]})
    assert snapshot(eng) == snapshot(fresh)
    eng.update(delete={"edge": [("b", "c")]})  # the moved relations keep being maintained
    fresh.update(delete={"edge": [("b", "c")]})
    assert snapshot(eng) == snapshot(fresh)


def test_replace_forgets_relations_only_the_old_program_mentioned() -> None:
    eng = Engine("p(X) :- q(X), r(X).")
    eng.update(insert={"q": [(1,)]})
    eng.replace("p(X) :- q(X).")
    assert eng.query("p") == {(1,)}
    with pytest.raises(UnknownRelationError):
        eng.query("r")


CHECKED = """
.on_demand can.
can(U, D) :- owns(U, D).
can(U, D) :- in(U, G), owns(G, D).
"""


@pytest.mark.parametrize("relation", ["can", "owns"])
@pytest.mark.parametrize(
    ("values", "error"),
    [
        (("u", ("Doc", "d")), InvalidValueError),  # a plain tuple equals an entity: invalid
        (("u",), ArityError),
        (("u", "d", "x"), ArityError),
        ("ud", ArityError),  # a string is not a tuple of values, whatever its length
        (("u", ["d"]), InvalidValueError),
        (("u", 1.5), InvalidValueError),
    ],
)
def test_contains_rejects_what_the_general_path_rejects(
    relation: str, values: object, error: type[Exception]
) -> None:
    eng = Engine(CHECKED)
    eng.update(insert={"owns": [("u", EntityRef("Doc", "d")), ("u", "d")]})
    assert eng.contains(relation, ("u", EntityRef("Doc", "d")))  # compiles the fast path
    with pytest.raises(error):
        eng.contains(relation, values)  # type: ignore[arg-type]


def test_contains_answers_for_unknown_and_typed_values() -> None:
    eng = Engine(CHECKED)
    eng.update(insert={"owns": [("g", 1), (True, "d")], "in": [("u", "g")]})
    for relation in ("can", "owns"):
        assert eng.contains(relation, ("g", 1)) and eng.contains(relation, [True, "d"])
        assert not eng.contains(relation, ("g", True))  # True is not 1
        assert not eng.contains(relation, (1, "d"))  # 1 is not True
        assert not eng.contains(relation, ("nobody", "d"))  # a value never seen
    assert eng.contains("can", ("u", 1)) and not eng.contains("owns", ("u", 1))
    eng.update(delete={"in": [("u", "g")]})  # the compiled checks read the live indexes
    assert not eng.contains("can", ("u", 1))


DRIVE_LIKE = """
.on_demand can.
can(U, A, D) :- at(D, F), has(U, R, F), gives(R, A).
can(U, A, D) :- at(D, F), in(U, G), has(G, R, F), gives(R, A).
"""


def _can(facts: dict[str, set[tuple[str, ...]]]) -> set[tuple[str, ...]]:
    out = set()
    for d, f in facts["at"]:
        for s, r, f2 in facts["has"]:
            if f2 != f:
                continue
            users = {s} | {u for u, g in facts["in"] if g == s}
            out |= {(u, a, d) for u in users for r2, a in facts["gives"] if r2 == r}
    return out


def test_on_demand_plans_pick_one_index_for_a_relation_only_they_read() -> None:
    facts = {
        "at": {("d1", "f1"), ("d2", "f2"), ("d3", "f1")},
        "has": {("u1", "owner", "f1"), ("g1", "viewer", "f2"), ("u2", "viewer", "f1")},
        "gives": {("owner", "read"), ("owner", "write"), ("viewer", "read")},
        "in": {("u2", "g1"), ("u3", "g1")},
    }
    eng = Engine(DRIVE_LIKE)
    eng.update(insert=facts)
    everything = {
        (u, a, d)
        for u in ("u1", "u2", "u3", "g1")
        for a in ("read", "write")
        for d in ["d1", "d2", "d3"]
    }
    for row in everything:
        assert eng.contains("can", row) == (row in _can(facts)), row
    has = eng._mat.relations["has"]
    assert len(has.indexes) == 1  # both rules read `has` through the same index
    # the relation keeps working through its new primary index
    eng.update(insert={"has": [("u3", "owner", "f2")]}, delete={"has": [("u1", "owner", "f1")]})
    facts["has"] = (facts["has"] | {("u3", "owner", "f2")}) - {("u1", "owner", "f1")}
    for row in everything:
        assert eng.contains("can", row) == (row in _can(facts)), row
    assert eng.query("has") == facts["has"]
    assert set(eng.lookup("has", (None, None, "f1"))) == {("u2", "viewer", "f1")}
    assert eng.contains("has", ("u3", "owner", "f2")) and not eng.contains(
        "has", ("u1", "owner", "f1")
    )
