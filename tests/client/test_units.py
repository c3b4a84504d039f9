"""rune.client without a broker: tokens, decision records, entity arguments."""

from __future__ import annotations

import pytest

from rune.client import ClientError, EntityRef, Token, decision_from_json, entity_json
from rune.policies.decision import Decision


def test_token_merge_json_and_satisfaction() -> None:
    a = Token.at("rune.facts", 0, 5)
    b = Token({"rune.facts": {0: 3, 1: 7}, "rune.policies": {0: 1}})
    both = a.merge(b)
    assert both.offsets == {"rune.facts": {0: 5, 1: 7}, "rune.policies": {0: 1}}
    assert both.consistency() == {
        "at_least": {"rune.facts": {"0": 5, "1": 7}, "rune.policies": {"0": 1}}
    }
    assert Token.from_json(both.consistency()) == both
    assert both.satisfied_by({"rune.facts": {"0": 5, "1": 9}, "rune.policies": {"0": 1}})
    assert not both.satisfied_by({"rune.facts": {"0": 4, "1": 9}, "rune.policies": {"0": 1}})
    assert not both.satisfied_by({"rune.facts": {"0": 5, "1": 9}})
    assert not Token() and both
    with pytest.raises(ClientError):
        Token.from_json({"at_least": {"t": {"x": 1}}})


def test_decision_records_round_trip() -> None:
    d = Decision("r-1", True, ("cedar:policy0",), (), 3, {"t": {"0": 9}}, 12, None, {"x": 1})
    assert decision_from_json(d.to_json()) == d
    deny = Decision("r-2", False, (), (), None, {}, 0, "stale view: ...")
    assert decision_from_json(deny.to_json()) == deny
    for bad in ({}, {"decision": "maybe"}, {"decision": "allow", "reasons": 3}):
        with pytest.raises(ValueError):
            decision_from_json(bad)


def test_entity_arguments() -> None:
    ref = {"type": "User", "id": "zoë"}
    assert entity_json(EntityRef("User", "zoë")) == ref
    assert entity_json('User::"zoë"') == ref
    assert entity_json(ref) == ref
    with pytest.raises(ClientError, match='expected Type::"id"'):
        entity_json("zoë")
