"""Relationship events: the fact they are, their record keys, and Zanzibar checks decided by
the Authorizer (the path of the request topic)."""

from __future__ import annotations

import pytest

from rune import Authorizer
from rune.models import compile_openfga, compile_spicedb
from rune.policies.errors import EventError
from rune.streams.keys import event_key, keys_match, tombstone_event

SCHEMA = """
definition user {}
definition group { relation member: user }
definition document {
  relation viewer: user | group#member | user:*
  permission view = viewer
}
"""


def test_keys_are_the_fact_keys() -> None:
    spicedb = {"op": "assert", "relationship": "document:1#viewer@group:eng#member"}
    fga = {
        "op": "retract",
        "user": "group:eng#member",
        "relation": "viewer",
        "object": "document:1",
    }
    nested = {
        "op": "assert",
        "tuple": {"user": "group:eng#member", "relation": "viewer", "object": "document:1"},
    }
    fact = {
        "op": "assert",
        "fact": ["relationship", "document", "1", "viewer", "group", "eng", "member"],
    }
    key = b'f:["relationship","document","1","viewer","group","eng","member"]'
    assert event_key(spicedb) == event_key(fga) == event_key(nested) == event_key(fact) == key
    assert keys_match(key, event_key(spicedb))
    assert tombstone_event(key) == {"op": "retract", "fact": fact["fact"]}
    assert event_key({"op": "assert", "relationship": "document:é#viewer@user:*"}) == (
        'f:["relationship","document","é","viewer","user","*",""]'.encode()
    )


def test_authorizer_applies_relationships_and_checks() -> None:
    az = Authorizer()
    az.load_bundle(compile_spicedb(SCHEMA).bundle(1))
    az.apply_batch(
        [
            {"op": "assert", "relationship": "group:eng#member@user:anne"},
            {
                "op": "assert",
                "user": "group:eng#member",
                "relation": "viewer",
                "object": "document:1",
            },
            {"op": "assert", "relationship": "document:2#viewer@user:*"},
        ]
    )
    ask = lambda res, subj: az.check(  # noqa: E731
        {"id": "r", "resource": res, "permission": "view", "subject": subj}
    )
    assert ask("document:1", "user:anne")["decision"] == "allow"
    assert ask("document:1", "user:anne")["reasons"] == ["zanzibar:document#view"]
    assert ask("document:1", "user:bob")["decision"] == "deny"
    assert ask("document:2", "user:bob")["decision"] == "allow"
    az.apply({"op": "retract", "relationship": "group:eng#member@user:anne"})
    assert ask("document:1", "user:anne")["decision"] == "deny"
    bad = ask("document:1", "robot:x")
    assert bad["decision"] == "deny" and "no type 'robot'" in bad["error"]
    explained = az.check(
        {
            "id": "e",
            "resource": "document:2",
            "permission": "view",
            "subject": "user:zed",
            "explain": True,
        }
    )
    assert "document:2#viewer@user:*  (relationship)" in explained["explanation"]["zanzibar"]


def test_bad_relationship_events_are_refused_at_their_place() -> None:
    az = Authorizer()
    az.load_bundle(compile_openfga("model\n  schema 1.1\ntype user\n").bundle(1))
    with pytest.raises(EventError, match=r"expected type:id#relation@subject"):
        az.apply_batch([{"op": "assert", "relationship": "document:1@user:anne"}])
    with pytest.raises(EventError, match="unknown field 'extra'"):
        az.apply({"op": "assert", "relationship": "d:1#v@u:a", "extra": 1})
