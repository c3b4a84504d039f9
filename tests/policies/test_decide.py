from __future__ import annotations

import itertools
from typing import Any

import cedarpy
import pytest

from rune.authorizer import Authorizer
from rune.policies.requests import MAX_REQUEST_ID_CHARS

from .helpers import action, doc, fact, group, req, upsert, user

CONTRACT_KEYS = {"id", "decision", "reasons", "errors", "policy_version", "watermark", "latency_us"}

HYBRID_DATALOG = """
allow(U, A, D) :- dl_permit(U, A, D).
deny(U, A, D) :- dl_forbid(U, A, D).
"""
HYBRID_CEDAR = """
@id("p") permit(principal, action, resource) when { resource.permit };
@id("f") forbid(principal, action, resource) when { resource.forbid };
"""


@pytest.mark.parametrize(("cp", "cf", "dp", "df"), list(itertools.product([False, True], repeat=4)))
def test_combination_table(cp: bool, cf: bool, dp: bool, df: bool) -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": HYBRID_DATALOG, "cedar": HYBRID_CEDAR})
    row = (user("u"), action("read"), doc("d"))
    events: list[dict[str, Any]] = [upsert(doc("d"), {"permit": cp, "forbid": cf})]
    if dp:
        events.append(fact("assert", "dl_permit", *row))
    if df:
        events.append(fact("assert", "dl_forbid", *row))
    az.apply_batch(events)
    d = az.check(req(*row))
    assert set(d) == CONTRACT_KEYS
    allowed = (cp or dp) and not (cf or df)
    assert d["decision"] == ("allow" if allowed else "deny")
    if allowed:
        want = (["p"] if cp else []) + (["datalog:allow"] if dp else [])  # by @id
    else:
        want = (["f"] if cf else []) + (["datalog:deny"] if df else [])
    assert d["reasons"] == want


def test_cedar_errors_are_reported_and_skip_the_policy() -> None:
    az = Authorizer()
    az.load_bundle(
        {
            "version": 1,
            "cedar": "permit(principal, action, resource);\n"
            "forbid(principal, action, resource) when { resource.missing };",
        }
    )
    d = az.check(req(user("u"), "read", doc("d")))
    assert d["decision"] == "allow" and d["reasons"] == ["policy0"]
    assert len(d["errors"]) == 1 and "policy1" in d["errors"][0]


def test_datalog_membership_feeds_cedar_in() -> None:
    az = Authorizer()
    az.load_bundle(
        {
            "version": 1,
            "datalog": "member_of(U, G) :- member(U, G).",
            "cedar": 'permit(principal in Group::"admins", action, resource in Folder::"root");',
        }
    )
    az.apply_batch(
        [
            fact("assert", "member", user("a"), group("eng")),
            upsert(group("eng"), parents=[group("admins")]),
            upsert(doc("d"), parents=[{"type": "Folder", "id": "sub"}]),
            upsert({"type": "Folder", "id": "sub"}, parents=[{"type": "Folder", "id": "root"}]),
        ]
    )
    r = req(user("a"), "read", doc("d"))
    assert az.check(r)["decision"] == "allow"
    az.apply(fact("retract", "member", user("a"), group("eng")))
    assert az.check(r)["decision"] == "deny"
    az.apply(fact("assert", "member_of", user("a"), group("admins")))
    assert az.check(r)["decision"] == "allow"


def test_slice_follows_references_context_and_literals() -> None:
    az = Authorizer()
    az.load_bundle(
        {
            "version": 1,
            "cedar": """
            permit(principal, action == Action::"read", resource)
              when { resource.owner.dept == principal.dept };
            permit(principal, action == Action::"audit", resource)
              when { context.auditor.level > 2 && Config::"global".open };
            """,
        }
    )
    az.apply_batch(
        [
            upsert(user("a"), {"dept": "eng"}),
            upsert(user("o"), {"dept": "eng"}),
            upsert(doc("d"), {"owner": {"__entity": user("o")}}),
            upsert(user("aud"), {"level": 3}),
            upsert({"type": "Config", "id": "global"}, {"open": True}),
        ]
    )
    assert az.check(req(user("a"), "read", doc("d")))["decision"] == "allow"
    az.apply(upsert(user("o"), {"dept": "ops"}))
    assert az.check(req(user("a"), "read", doc("d")))["decision"] == "deny"
    ctx = {"auditor": {"__entity": user("aud")}}
    assert az.check(req(user("a"), "audit", doc("d"), context=ctx))["decision"] == "allow"
    az.apply(upsert({"type": "Config", "id": "global"}, {"open": False}))
    assert az.check(req(user("a"), "audit", doc("d"), context=ctx))["decision"] == "deny"


def test_cedar_only_matches_cedar_on_random_graphs() -> None:
    import random

    rng = random.Random(7)
    policies = """
    permit(principal in Group::"g0", action == Action::"read", resource);
    permit(principal, action, resource in Folder::"f1") when { principal.level >= 2 };
    forbid(principal, action == Action::"write", resource) unless { resource.owner == principal };
    permit(principal, action == Action::"write", resource)
      when { resource.owner.level < principal.level };
    """
    for _ in range(20):
        entities: dict[tuple[str, str], dict[str, Any]] = {}
        for i in range(4):
            entities["Group", f"g{i}"] = {
                "uid": group(f"g{i}"),
                "attrs": {},
                "parents": [group(f"g{j}") for j in range(i) if rng.random() < 0.4],
            }
        for i in range(4):
            entities["User", f"u{i}"] = {
                "uid": user(f"u{i}"),
                "attrs": {"level": rng.randrange(4)},
                "parents": [group(f"g{j}") for j in range(4) if rng.random() < 0.3],
            }
        for i in range(3):
            entities["Folder", f"f{i}"] = {
                "uid": {"type": "Folder", "id": f"f{i}"},
                "attrs": {},
                "parents": [
                    {"type": "Folder", "id": f"f{j}"} for j in range(i) if rng.random() < 0.5
                ],
            }
        for i in range(4):
            entities["Doc", f"d{i}"] = {
                "uid": doc(f"d{i}"),
                "attrs": {"owner": {"__entity": user(f"u{rng.randrange(4)}")}},
                "parents": [{"type": "Folder", "id": f"f{rng.randrange(3)}"}],
            }
        az = Authorizer(cache_entries=0)
        az.load_bundle({"version": 1, "cedar": policies})
        az.apply_batch([{"op": "upsert", "entity": e} for e in entities.values()])
        ps = cedarpy.PolicySet.from_str(policies)
        for u, a, d in itertools.product(range(4), ("read", "write"), range(4)):
            r = req(user(f"u{u}"), a, doc(f"d{d}"))
            ours = az.check(r)
            theirs = cedarpy.is_authorized(
                {k: r[k] for k in ("principal", "action", "resource", "context")},
                ps,
                list(entities.values()),
            )
            assert ours["decision"] == theirs.decision.value.lower()
            assert ours["reasons"] == sorted(theirs.diagnostics.reasons)
            assert len(ours["errors"]) == len(theirs.diagnostics.errors)


@pytest.mark.parametrize(
    ("request_", "error_start"),
    [
        ({"id": "x"}, "principal"),
        ({"id": "x", "principal": user("a"), "action": action("r"), "resource": 5}, "resource"),
        (
            {
                "id": "x",
                "principal": user("a"),
                "action": action("r"),
                "resource": doc("d"),
                "context": [],
            },
            "context",
        ),
        (
            {
                "id": "x",
                "principal": user("a"),
                "action": action("r"),
                "resource": doc("d"),
                "bogus": 1,
            },
            "bogus",
        ),
        (
            {
                "id": "x",
                "principal": user("a"),
                "action": action("r"),
                "resource": doc("d"),
                "explain": "yes",
            },
            "explain",
        ),
        (
            {"id": "x", "principal": user("a" * 2000), "action": action("r"), "resource": doc("d")},
            "principal",
        ),
        (
            {
                "id": "x",
                "principal": user("a"),
                "action": action("r"),
                "resource": doc("d"),
                "context": {"a": 1.5},
            },
            "context.a",
        ),
        (
            {
                "id": "x",
                "principal": {"type": "Bad Type", "id": "a"},
                "action": action("r"),
                "resource": doc("d"),
            },
            "principal.type",
        ),
    ],
)
def test_malformed_requests_get_a_deny_with_error(
    request_: dict[str, Any], error_start: str
) -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "cedar": "permit(principal, action, resource);"})
    d = az.check(request_)
    assert d["decision"] == "deny" and d["id"] == "x"
    assert d["error"].startswith(error_start + ":")
    assert set(d) == CONTRACT_KEYS | {"error"}


def test_unreadable_ids_and_limits() -> None:
    az = Authorizer()
    ok = req(user("a"), "r", doc("d"))
    assert az.check({**ok, "id": "i" * MAX_REQUEST_ID_CHARS})["id"] == "i" * MAX_REQUEST_ID_CHARS
    long = az.check({**ok, "id": "i" * (MAX_REQUEST_ID_CHARS + 1)})
    assert long["id"] is None and long["error"].startswith("id:")
    assert az.check(["not", "a", "dict"])["id"] is None  # type: ignore[arg-type]
    deep: dict[str, Any] = {}
    cur = deep
    for _ in range(40):
        cur["x"] = {}
        cur = cur["x"]
    d = az.check({**ok, "context": deep})
    assert d["decision"] == "deny" and "deeper" in d["error"]


def test_schema_rejects_unknown_types_in_requests() -> None:
    az = Authorizer()
    az.load_bundle(
        {
            "version": 1,
            "cedar": "permit(principal, action, resource);",
            "schema": "entity User; entity Doc;\n"
            "action read appliesTo { principal: [User], resource: [Doc] };",
        }
    )
    assert az.check(req(user("a"), "read", doc("d")))["decision"] == "allow"
    bad = az.check(req({"type": "Robot", "id": "r"}, "read", doc("d")))
    assert bad["decision"] == "deny" and "Robot" in bad["error"]
    assert "action" in az.check(req(user("a"), "fly", doc("d")))["error"]


def test_datalog_only_checks() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": 'allow(U, Action::"read", D) :- grant(U, D).'})
    az.apply(fact("assert", "grant", user("a"), doc("d")))
    d = az.check(req(user("a"), "read", doc("d")))
    assert d["decision"] == "allow" and d["reasons"] == ["datalog:allow"] and d["errors"] == []
    assert az.check(req(user("a"), "write", doc("d")))["decision"] == "deny"


def test_explain_allow_and_deny() -> None:
    az = Authorizer()
    az.load_bundle(
        {
            "version": 1,
            "datalog": "allow(U, A, D) :- grant(U, A, D).\n"
            "deny(U, A, D) :- banned(U), grant(U, A, D).",
            "cedar": '@id("ro") permit(principal, action == Action::"read", resource)\n'
            "when { resource.public };",
        }
    )
    az.apply_batch(
        [
            fact("assert", "grant", user("a"), action("read"), doc("d")),
            upsert(doc("d"), {"public": True}),
        ]
    )
    d = az.check(req(user("a"), "read", doc("d"), explain=True))
    ex = d["explanation"]
    assert d["decision"] == "allow"
    assert ex["cedar"]["determining"] == [
        {"id": "policy0", "effect": "permit", "annotation_id": "ro"}
    ]
    assert ex["datalog"]["allow"]["holds"] is True
    assert ex["datalog"]["allow"]["explanation"]["line"] == 1
    assert ex["datalog"]["deny"]["holds"] is False
    assert ex["datalog"]["deny"]["explanation"]["attempts"]
    d = az.check(req(user("b"), "write", doc("d"), explain=True))
    ex = d["explanation"]
    assert d["decision"] == "deny"
    assert ex["cedar"]["not_applicable"] == ["policy0"]
    assert ex["datalog"]["allow"]["explanation"]["attempts"][0]["line"] == 1
    assert az.cache_stats().entries == 0  # explained decisions are not cached


def test_watermark_and_batch() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "cedar": 'permit(principal == User::"a", action, resource);'})
    az.advance_watermark("rune.facts", 0, 12)
    az.advance_watermark("rune.facts", 0, 5)
    out = az.check_batch(
        [
            req(user("a"), "r", doc("d"), rid="1"),
            {"id": "2"},
            req(user("b"), "r", doc("d"), rid="3"),
        ]
    )
    assert [o["id"] for o in out] == ["1", "2", "3"]
    assert [o["decision"] for o in out] == ["allow", "deny", "deny"]
    assert out[0]["watermark"] == {"rune.facts": {"0": 12}}
    assert "error" in out[1]


def test_hierarchy_cycle_fails_closed() -> None:
    az = Authorizer()
    az.load_bundle(
        {
            "version": 1,
            "datalog": "allow(U, A, R) :- ok(U, A, R).",
            "cedar": 'permit(principal in Group::"b", action, resource);',
        }
    )
    az.apply_batch(
        [
            fact("assert", "member_of", group("a"), group("b")),
            fact("assert", "member_of", group("b"), group("a")),
            fact("assert", "ok", group("a"), action("r"), doc("d")),
        ]
    )
    d = az.check(req(group("a"), "r", doc("d")))
    assert d["decision"] == "deny" and d["reasons"] == []
    assert any("cycle" in e for e in d["errors"])
    az.apply(fact("retract", "member_of", group("b"), group("a")))
    d = az.check(req(group("a"), "r", doc("d")))
    assert d["decision"] == "allow" and d["reasons"] == ["policy0", "datalog:allow"]


def test_batch_isolates_requests_from_each_others_slices() -> None:
    az = Authorizer(cache_entries=0)
    az.load_bundle({"version": 1, "cedar": ""})
    az.apply_batch([upsert(user("bad"), {"dept": 7}), upsert(user("good"), {"dept": "x"})])
    az.load_bundle(
        {
            "version": 2,
            "cedar": 'permit(principal, action, resource) when { principal.dept == "x" };',
            "schema": "entity User { dept: String }; entity Doc;\n"
            "action read appliesTo { principal: [User], resource: [Doc] };",
        }
    )
    one, two = az.check_batch(
        [req(user("bad"), "read", doc("d"), rid="1"), req(user("good"), "read", doc("d"), rid="2")]
    )
    assert one["decision"] == "deny" and one["errors"] and "error" not in one
    assert two == {
        **az.check(req(user("good"), "read", doc("d"), rid="2")),
        "latency_us": two["latency_us"],
    }
    assert two["decision"] == "allow"


def test_rule_reasons_name_the_deriving_rule() -> None:
    az = Authorizer(rule_reasons=True)
    az.load_bundle(
        {
            "version": 1,
            "datalog": "allow(U, A, D) :- grant(U, A, D).\n"
            "deny(U, A, D) :- banned(U), grant(U, A, D).",
        }
    )
    az.apply(fact("assert", "grant", user("a"), action("r"), doc("d")))
    assert az.check(req(user("a"), "r", doc("d")))["reasons"] == ["datalog:allow@1:1"]
    az.apply(fact("assert", "banned", user("a")))
    assert az.check(req(user("a"), "r", doc("d")))["reasons"] == ["datalog:deny@2:1"]


def test_allow_facts_without_rules() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "cedar": ""})
    r = req(user("a"), "r", doc("d"))
    assert az.check(r)["decision"] == "deny"
    az.apply(fact("assert", "allow", user("a"), action("r"), doc("d")))
    assert az.check(r)["reasons"] == ["datalog:allow"]
    az.apply(fact("assert", "deny", user("a"), action("r"), doc("d")))
    assert az.check(r)["reasons"] == ["datalog:deny"]
