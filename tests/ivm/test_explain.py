"""Explain: derivation trees for present tuples, failed literals for absent ones (golden)."""

from __future__ import annotations

import orjson
import pytest

from rune.ivm import Absence, Derivation, Engine, EntityRef
from tests.ivm.golden import GOLDEN, check_golden

DRIVE = """
in_group(U, G) :- member(U, G).
in_group(U, G) :- in_group(U, H), subgroup(H, G).
ancestor(F, F) :- folder(F).
ancestor(F, A) :- ancestor(F, P), folder_parent(P, A).
role_implies("owner", "editor").
role_implies("editor", "viewer").
has_role(S, R, F) :- grant(S, R, F).
has_role(S, R2, F) :- has_role(S, R1, F), role_implies(R1, R2).
allow(U, Action::"read", D) :- doc_folder(D, F), ancestor(F, A), in_group(U, G),
                               has_role(G, "viewer", A), !suspended(U).
allow(U, Action::"read", D) :- doc_folder(D, F), ancestor(F, A), has_role(U, "viewer", A),
                               !suspended(U).
.on_demand allow.
"""

ALICE = EntityRef("User", "alice")
BOB = EntityRef("User", "bob")
ENG = EntityRef("Group", "eng")
ALL = EntityRef("Group", "all")
ROOT = EntityRef("Folder", "root")
SUB = EntityRef("Folder", "sub")
DOC = EntityRef("Doc", "d1")
READ = EntityRef("Action", "read")


@pytest.fixture
def drive() -> Engine:
    eng = Engine(DRIVE)
    eng.update(
        insert={
            "member": [(ALICE, ENG)],
            "subgroup": [(ENG, ALL)],
            "folder": [(ROOT,), (SUB,)],
            "folder_parent": [(SUB, ROOT)],
            "doc_folder": [(DOC, SUB)],
            "grant": [(ALL, "editor", ROOT)],
        }
    )
    return eng


def test_allow_derivation_golden(drive: Engine) -> None:
    found = drive.explain("allow", (ALICE, READ, DOC))
    assert isinstance(found, Derivation)
    check_golden(GOLDEN / "explain" / "allow_present.txt", found.render())
    check_golden(
        GOLDEN / "explain" / "allow_present.json",
        orjson.dumps(found.to_json(), option=orjson.OPT_INDENT_2).decode() + "\n",
    )


def test_absent_allow_golden(drive: Engine) -> None:
    drive.update(insert={"suspended": [(ALICE,)]})
    missing = drive.explain("allow", (ALICE, READ, DOC))
    assert isinstance(missing, Absence)
    check_golden(GOLDEN / "explain" / "allow_absent_suspended.txt", missing.render())
    nobody = drive.explain("allow", (BOB, READ, DOC))
    assert isinstance(nobody, Absence)
    check_golden(GOLDEN / "explain" / "allow_absent_unknown_user.txt", nobody.render())


def test_recursive_derivation_never_loops_through_a_cycle() -> None:
    eng = Engine("path(X, Y) :- edge(X, Y).\npath(X, Z) :- path(X, Y), edge(Y, Z).")
    eng.update(insert={"edge": [("a", "b"), ("b", "a"), ("b", "c")]})
    found = eng.explain("path", ("a", "a"))
    assert isinstance(found, Derivation)
    check_golden(GOLDEN / "explain" / "cycle.txt", found.render())

    def depth(d: Derivation) -> int:
        return 1 + max((depth(c) for c in d.children), default=0)

    assert depth(found) <= 4


def test_explain_of_asserted_and_base_facts(drive: Engine) -> None:
    base = drive.explain("member", (ALICE, ENG))
    assert isinstance(base, Derivation) and base.rule is None
    drive.update(insert={"in_group": [(BOB, ENG)]})
    asserted = drive.explain("in_group", (BOB, ENG))
    assert isinstance(asserted, Derivation) and asserted.rule is None and not asserted.children


def test_explain_every_present_tuple_is_a_valid_tree(drive: Engine) -> None:
    for relation in ("in_group", "ancestor", "has_role"):
        for row in drive.query(relation):
            tree = drive.explain(relation, row)
            assert isinstance(tree, Derivation)
            _check_tree(drive, tree)


def _check_tree(eng: Engine, tree: Derivation) -> None:
    assert eng.contains(tree.relation, tree.values)
    for child in tree.children:
        _check_tree(eng, child)


def test_absence_checks_a_comparison_or_negation_once_its_variables_are_bound() -> None:
    """Written before the atom that binds its variable, the literal used to crash explain."""
    eng = Engine("p(X) :- Y < 5, q(X, Y).\nr(X) :- !s(X, Y), q(X, Y), Y > 8.")
    eng.update(insert={"q": [(7, 9), (3, 6)], "s": [(3, 6)]})
    absent = eng.explain("p", (3,))
    assert not absent.present
    assert [(a.failed, a.literal_index) for a in absent.attempts] == [("Y < 5", 0)]
    assert [(a.failed, a.literal_index) for a in eng.explain("p", (1,)).attempts] == [
        ("q(1, Y)", 1)
    ]
    assert [(a.failed, a.literal_index) for a in eng.explain("r", (3,)).attempts] == [
        ("!s(3, Y)", 0)
    ]
    assert eng.explain("r", (7,)).present


def test_a_failed_literal_shows_the_bindings_that_reached_it() -> None:
    from rune.ivm import Engine, EntityRef
    from rune.ivm.explain import MAX_TRIED

    eng = Engine("allow(P, A, R) :- member(P, G), can(G, R, A).")
    user = EntityRef("User", "u")
    groups = [EntityRef("Group", g) for g in "abcdefg"]
    view, edit, doc = (
        EntityRef("Action", "view"),
        EntityRef("Action", "edit"),
        EntityRef("Doc", "x"),
    )
    eng.update(insert={"member": [(user, g) for g in groups], "can": [(groups[0], doc, view)]})
    absence = eng.explain("allow", (user, edit, doc))
    [attempt] = absence.attempts  # type: ignore[union-attr]
    assert attempt.failed == 'can(G, Doc::"x", Action::"edit")'
    assert attempt.tried_total == len(groups) and len(attempt.tried) == MAX_TRIED
    assert all(t.startswith('can(Group::"') and t.endswith(', Doc::"x", Action::"edit")')
               for t in attempt.tried)  # fmt: skip
    assert f"and {len(groups) - MAX_TRIED} more" in absence.render()
    assert absence.to_json()["attempts"][0]["tried_total"] == len(groups)
    # a literal the head binds completely needs no list: the failed text says it all
    eng2 = Engine("ok(X) :- base(X), !bad(X).")
    eng2.update(insert={"base": [("a",)], "bad": [("a",)]})
    [only] = eng2.explain("ok", ("a",)).attempts  # type: ignore[union-attr]
    assert only.tried == () and "tried" not in only.to_json()
