"""``rune.policies.cedarcall``: the direct call into cedarpy's extension answers exactly as
cedarpy's public ``is_authorized_batch`` does (decision, reasons, errors word for word,
``@id`` annotations), with and without a schema, for good and failing requests and entities."""

from __future__ import annotations

import itertools
import re
from typing import Any

import cedarpy
import orjson
import pytest

from rune.ivm.values import EntityRef
from rune.policies import cedarcall
from rune.policies.cedarcall import Answer, authorize, cedar_request

POLICIES = """
@id("owner") permit(principal, action, resource) when { resource.owner == principal };
permit(principal in Group::"admins", action == Action::"read", resource);
forbid(principal, action, resource) when { context.level > principal.level };
@id("net") permit(principal, action, resource) when { context has ip && context.ip.isLoopback() };
"""
SCHEMA = """
entity Group; entity User in [Group] { level: Long };
entity Doc { owner: User };
action read, write appliesTo {
  principal: [User], resource: [Doc], context: { level: Long, ip?: ipaddr }
};
"""
U = [EntityRef("User", f"u{i}") for i in range(3)]
D = [EntityRef("Doc", f"d{i}") for i in range(2)]


def _entities(cycle: bool = False, bad_attr: bool = False) -> str:
    ents: list[dict[str, Any]] = [
        {"uid": {"type": "User", "id": "u0"}, "attrs": {"level": 1}, "parents": []},
        {
            "uid": {"type": "User", "id": "u1"},
            "attrs": {"level": "high" if bad_attr else 5},
            "parents": [{"type": "Group", "id": "admins"}],
        },
        {
            "uid": {"type": "Doc", "id": "d0"},
            "attrs": {"owner": {"__entity": {"type": "User", "id": "u0"}}},
            "parents": [],
        },
        {"uid": {"type": "Group", "id": "admins"}, "attrs": {}, "parents": []},
    ]
    if cycle:
        ents[3]["parents"] = [{"type": "User", "id": "u1"}]
    return orjson.dumps(ents).decode()


CONTEXTS: list[dict[str, object]] = [
    {},
    {"level": 3},
    {"level": 0, "ip": {"__extn": {"fn": "ip", "arg": "127.0.0.1"}}},
    {"level": "x"},
    {"other": True},
]


def _requests(with_schema: bool) -> list[dict[str, Any]]:
    actions = [EntityRef("Action", a) for a in ("read", "write", "nope")]
    return [
        cedar_request(p, a, r, ctx, with_schema)
        for p, a, r, ctx in itertools.product([*U, D[0]], actions, D, CONTEXTS)
    ]


def test_the_direct_call_is_available() -> None:
    """The installed cedarpy has the extension function (else every check pays the wrapper)."""
    assert cedarcall._RAW is not None


@pytest.mark.parametrize("with_schema", [False, True])
@pytest.mark.parametrize(("cycle", "bad_attr"), [(False, False), (True, False), (False, True)])
def test_direct_call_answers_as_the_public_wrapper(
    with_schema: bool, cycle: bool, bad_attr: bool
) -> None:
    policies = cedarpy.PolicySet.from_str(POLICIES)
    schema = cedarpy.Schema.from_str(SCHEMA) if with_schema else None
    entities = _entities(cycle, bad_attr)
    requests = _requests(with_schema)
    fast = authorize(requests, policies, entities, schema)
    slow = cedarcall._public(requests, policies, entities, schema)
    assert [_norm(a) for a in fast] == [_norm(a) for a in slow]
    decisions = {a.decision for a in fast}
    if cycle or (bad_attr and with_schema):
        assert decisions == {"NoDecision"}
    else:
        assert decisions >= {"Allow", "Deny"}
        assert any(a.errors for a in fast) and any(a.annotations for a in fast)
    assert any(a.decision == "NoDecision" and a.errors for a in fast) or not with_schema


def test_an_empty_context_without_schema_is_left_out() -> None:
    """Without a schema Cedar's empty context equals a parsed ``{}``; with one, the context
    is always passed so that Cedar checks it against the action (same errors as before)."""
    p, a, r = U[0], EntityRef("Action", "read"), D[0]
    assert "context" not in cedar_request(p, a, r, {}, with_schema=False)
    assert cedar_request(p, a, r, {}, with_schema=True)["context"] == "{}"
    assert cedar_request(p, a, r, {"k": 1}, with_schema=False)["context"] == '{"k":1}'
    policies = cedarpy.PolicySet.from_str("permit(principal, action, resource);")
    schema = cedarpy.Schema.from_str(SCHEMA)
    (answer,) = authorize([cedar_request(p, a, r, {}, True)], policies, "[]", schema)
    assert answer.decision == "NoDecision" and "level" in answer.errors[0]


def _norm(a: Answer) -> tuple[str, list[str], list[str], dict[str, str]]:
    # Which vertex of a cycle Cedar names varies from call to call (hash order).
    errors = sorted(_VERTEX.sub("cycle", e) for e in a.errors)
    return a.decision, sorted(a.reasons), errors, a.annotations


_VERTEX = re.compile(r"cycle containing vertex `[^`]*`")
