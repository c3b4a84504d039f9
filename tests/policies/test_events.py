from __future__ import annotations

from typing import Any

import pytest

from rune.authorizer import Authorizer
from rune.ivm.values import EntityRef
from rune.policies import EventError

from .helpers import delete, doc, fact, group, req, upsert, user

E = EntityRef


def views(az: Authorizer, relation: str) -> set[tuple[Any, ...]]:
    try:
        return set(az.engine.lookup(relation, (None,) * (az.engine.arity(relation) or 0)))
    except Exception:
        return set()


def test_assert_retract_are_set_operations() -> None:
    az = Authorizer()
    ch = az.apply(fact("assert", "member", user("a"), group("g")))
    assert ch["member"].added == {(E("User", "a"), E("Group", "g"))}
    assert az.apply(fact("assert", "member", user("a"), group("g"))) == {}
    assert az.apply(fact("retract", "member", user("a"), {"__entity": group("g")}))[
        "member"
    ].removed
    assert az.apply(fact("retract", "member", user("a"), group("g"))) == {}


def test_scalar_arguments() -> None:
    az = Authorizer()
    az.apply(fact("assert", "p", "s", 7, True, -(2**63)))
    assert views(az, "p") == {("s", 7, True, -(2**63))}


def test_upsert_exposes_builtin_relations_and_replaces_exactly() -> None:
    az = Authorizer()
    alice = user("alice")
    az.apply(
        upsert(
            alice,
            {
                "dept": "eng",
                "level": 3,
                "admin": False,
                "manager": {"__entity": user("bob")},
                "roles": ["a", "b", {"__entity": group("x")}],
                "address": {"city": "Paris"},
                "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
            },
            [group("eng"), group("ops")],
            tags={"color": "blue", "nested": {"a": 1}},
        )
    )
    a = E("User", "alice")
    assert views(az, "entity") == {(a,)}
    assert views(az, "parent") == {(a, E("Group", "eng")), (a, E("Group", "ops"))}
    assert views(az, "attr") == {
        (a, "dept", "eng"),
        (a, "level", 3),
        (a, "admin", False),
        (a, "manager", E("User", "bob")),
    }
    assert views(az, "attr_elem") == {
        (a, "roles", "a"),
        (a, "roles", "b"),
        (a, "roles", E("Group", "x")),
    }
    assert views(az, "tag") == {(a, "color", "blue")}
    assert (a, E("Group", "eng")) in views(az, "entity_in")
    assert views(az, "has_members") == {(E("Group", "eng"),), (E("Group", "ops"),)}
    az.apply(upsert(alice, {"dept": "ops"}, [group("ops")]))
    assert views(az, "parent") == {(a, E("Group", "ops"))}
    assert views(az, "attr") == {(a, "dept", "ops")}
    assert views(az, "attr_elem") == set() and views(az, "tag") == set()
    az.apply(delete(alice))
    assert views(az, "entity") == set() and views(az, "parent") == set()


def test_empty_ids_and_action_groups() -> None:
    az = Authorizer()
    az.load_bundle(
        {"version": 1, "cedar": 'permit(principal, action in Action::"readOnly", resource);'}
    )
    az.apply_batch(
        [
            upsert(
                {"type": "Action", "id": "view"}, parents=[{"type": "Action", "id": "readOnly"}]
            ),
            upsert({"type": "Action", "id": "readOnly"}),
            upsert(user("")),
        ]
    )
    assert az.check(req(user(""), "view", doc("")))["decision"] == "allow"
    assert az.check(req(user(""), "edit", doc("")))["decision"] == "deny"


@pytest.mark.parametrize(
    ("event", "location"),
    [
        ("x", ""),
        ({"op": "nope"}, "op"),
        ({"op": "assert"}, ""),
        ({"op": "assert", "fact": []}, "fact"),
        ({"op": "assert", "fact": ["Bad", 1]}, "fact[0]"),
        ({"op": "assert", "fact": ["entity", user("a")]}, "fact[0]"),
        ({"op": "retract", "fact": ["has_members", group("g")]}, "fact[0]"),
        ({"op": "assert", "fact": ["p", 1, 1.5]}, "fact[2]"),
        ({"op": "assert", "fact": ["p", None]}, "fact[1]"),
        ({"op": "assert", "fact": ["p", 2**64]}, "fact[1]"),
        ({"op": "assert", "fact": ["p", {"type": "User"}]}, "fact[1].id"),
        ({"op": "assert", "fact": ["p", {"type": "", "id": "x"}]}, "fact[1].type"),
        ({"op": "assert", "fact": ["p", 1], "extra": 1}, "extra"),
        ({"op": "upsert", "entity": {"attrs": {}}}, "entity"),
        ({"op": "upsert", "entity": {"uid": user("a"), "attrs": {"x": 1.5}}}, "entity.attrs.x"),
        (
            {"op": "upsert", "entity": {"uid": user("a"), "attrs": {"x": {"y": [None]}}}},
            "entity.attrs.x.y[0]",
        ),
        ({"op": "upsert", "entity": {"uid": user("a"), "parents": [1]}}, "entity.parents[0]"),
        (
            {
                "op": "upsert",
                "entity": {
                    "uid": user("a"),
                    "attrs": {"i": {"__extn": {"fn": "ip", "arg": "zzz"}}},
                },
            },
            "entity",
        ),
        ({"op": "upsert", "entity": {"uid": user("a"), "bogus": 1}}, "entity"),
        ({"op": "delete", "entity": {"uid": user("a"), "attrs": {}}}, "entity"),
    ],
)
def test_bad_events_are_located(event: object, location: str) -> None:
    with pytest.raises(EventError) as info:
        Authorizer().apply(event)  # type: ignore[arg-type]
    assert info.value.location == location


def test_arity_mismatch_is_located() -> None:
    az = Authorizer()
    az.apply(fact("assert", "p", 1, 2))
    with pytest.raises(EventError) as info:
        az.apply_batch([fact("assert", "q", 1), fact("assert", "p", 1)])
    assert info.value.location == "events[1].fact"
    assert views(az, "q") == set()


def test_batch_is_all_or_nothing_and_located() -> None:
    az = Authorizer()
    with pytest.raises(EventError) as info:
        az.apply_batch([fact("assert", "p", 1), upsert(user("a"), {"x": 1.5})])
    assert info.value.location == "events[1].entity.attrs.x"
    assert views(az, "p") == set() and views(az, "entity") == set()


def test_batch_nets_in_order() -> None:
    az = Authorizer()
    az.apply(fact("assert", "p", 1))
    ch = az.apply_batch(
        [
            fact("retract", "p", 1),
            fact("assert", "p", 2),
            fact("retract", "p", 2),
            fact("assert", "p", 1),
            upsert(user("a"), {"v": 1}),
            upsert(user("a"), {"v": 2}),
            upsert(user("b")),
            delete(user("b")),
        ]
    )
    assert views(az, "p") == {(1,)}
    assert "p" not in ch
    assert views(az, "attr") == {(E("User", "a"), "v", 2)}
    assert views(az, "entity") == {(E("User", "a"),)}


def test_schema_checks_entities() -> None:
    az = Authorizer()
    az.load_bundle(
        {
            "version": 1,
            "cedar": "",
            "schema": "entity Group; entity User in [Group] { dept: String };",
        }
    )
    az.apply(upsert(user("a"), {"dept": "x"}, [group("g")]))
    with pytest.raises(EventError) as info:
        az.apply_batch([upsert(user("b"), {"dept": "x"}), upsert(user("c"), {"dept": 1})])
    assert info.value.location == "events[1].entity"
    assert "schema" in info.value.message
