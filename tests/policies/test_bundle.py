from __future__ import annotations

import pytest

from rune.authorizer import Authorizer
from rune.policies import BundleError, StaleBundleError

from .helpers import doc, fact, req, user

SCHEMA = """
entity User; entity Doc { public: Bool };
action read appliesTo { principal: [User], resource: [Doc] };
"""


def test_first_bundle_and_report() -> None:
    az = Authorizer()
    assert az.policy_version is None
    report = az.load_bundle(
        {"version": 3, "datalog": "", "cedar": "permit(principal, action, resource);"}
    )
    assert report["version"] == 3 and report["previous_version"] is None
    assert report["cedar_policies"] == 1
    assert az.check(req(user("a"), "read", doc("d")))["policy_version"] == 3


def test_no_bundle_denies() -> None:
    d = Authorizer().check(req(user("a"), "read", doc("d")))
    assert d["decision"] == "deny" and d["policy_version"] is None


@pytest.mark.parametrize(
    ("cedar", "location"),
    [
        ("permit(principal, action, resource) when { 1 + };", "cedar:policy0 (1:1)"),
        (
            "permit(principal, action, resource);\n// x;\n"
            '  forbid(principal, action, resource) when { "a;" };\n'
            "permit(principal, action resource);",
            "cedar:policy2 (4:1)",
        ),
    ],
)
def test_cedar_parse_error_is_located(cedar: str, location: str) -> None:
    az = Authorizer()
    with pytest.raises(BundleError) as info:
        az.load_bundle({"version": 1, "cedar": cedar})
    assert info.value.location == location


def test_cedar_validation_names_policy() -> None:
    az = Authorizer()
    bad = 'permit(principal, action == Action::"read", resource) when { resource.nope };'
    with pytest.raises(BundleError) as info:
        az.load_bundle(
            {
                "version": 1,
                "cedar": "permit(principal, action, resource);\n" + bad,
                "schema": SCHEMA,
            }
        )
    assert info.value.location == "cedar:policy1"


def test_schema_forms() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "cedar": "", "schema": SCHEMA})
    json_schema = {
        "": {
            "entityTypes": {"User": {}, "Doc": {}},
            "actions": {
                "read": {"appliesTo": {"principalTypes": ["User"], "resourceTypes": ["Doc"]}}
            },
        }
    }
    az.load_bundle({"version": 2, "cedar": "", "schema": json_schema})
    with pytest.raises(BundleError) as info:
        az.load_bundle({"version": 3, "schema": "entity ;"})
    assert info.value.location == "schema"
    assert az.policy_version == 2


def test_datalog_errors_are_located_and_keep_active_bundle() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": "allow(U, A, D) :- grant(U, A, D)."})
    az.apply(fact("assert", "grant", user("a"), {"type": "Action", "id": "read"}, doc("d")))
    with pytest.raises(BundleError) as info:
        az.load_bundle({"version": 2, "datalog": "ok(X) :- q(X).\nbad(X) :- q(X), !r(Y)."})
    assert info.value.location.startswith("datalog 2:")
    with pytest.raises(BundleError) as info:
        az.load_bundle({"version": 2, "datalog": "allow(X) :- q(X)."})
    assert "three arguments" in info.value.message
    with pytest.raises(BundleError) as info:
        az.load_bundle({"version": 2, "datalog": "parent(X, Y, Z) :- q(X, Y, Z)."})
    assert az.policy_version == 1
    assert az.check(req(user("a"), "read", doc("d")))["decision"] == "allow"


def test_stale_versions_are_refused() -> None:
    az = Authorizer()
    az.load_bundle({"version": 5, "cedar": ""})
    for v in (5, 4):
        with pytest.raises(StaleBundleError):
            az.load_bundle({"version": v, "cedar": "permit(principal, action, resource);"})
    assert az.policy_version == 5


@pytest.mark.parametrize(
    ("bundle", "location"),
    [
        ([], ""),
        ({"version": "1"}, "version"),
        ({"version": True}, "version"),
        ({"version": -1}, "version"),
        ({"version": 1, "datalog": 3}, "datalog"),
        ({"version": 1, "cedar": 3}, "cedar"),
        ({"version": 1, "schema": 3}, "schema"),
        ({"version": 1, "extra": 3}, "extra"),
        ({"version": 1, "cedar": {"staticPolicies": 1}}, "cedar"),
    ],
)
def test_malformed_bundles(bundle: object, location: str) -> None:
    with pytest.raises(BundleError) as info:
        Authorizer().load_bundle(bundle)  # type: ignore[arg-type]
    assert info.value.location == location


def test_swap_recomputes_views_and_invalidates_cache() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": 'allow(U, Action::"read", D) :- viewer(U, D).'})
    az.apply(fact("assert", "viewer", user("a"), doc("d")))
    az.apply(fact("assert", "editor", user("b"), doc("d")))
    r_a, r_b = req(user("a"), "read", doc("d")), req(user("b"), "read", doc("d"))
    assert az.check(r_a)["decision"] == "allow" and az.check(r_b)["decision"] == "deny"
    az.check(r_a)
    assert az.cache_stats().hits == 1
    report = az.load_bundle(
        {"version": 2, "datalog": 'allow(U, Action::"read", D) :- editor(U, D).'}
    )
    assert report["changes"]["allow"] == {"added": 1, "removed": 1}
    assert az.check(r_a)["decision"] == "deny" and az.check(r_b)["decision"] == "allow"


def test_json_policy_ids_are_cedars() -> None:
    az = Authorizer()
    est = {
        "staticPolicies": {
            "only-admins": {
                "effect": "permit",
                "principal": {"op": "==", "entity": {"type": "User", "id": "admin"}},
                "action": {"op": "All"},
                "resource": {"op": "All"},
                "conditions": [],
            }
        },
        "templates": {},
        "templateLinks": [],
    }
    az.load_bundle({"version": 1, "cedar": est})
    d = az.check(req(user("admin"), "read", doc("d")))
    assert d["decision"] == "allow" and d["reasons"] == ["only-admins"]
