"""Cedar entity slices and their per-entity memo (``rune.policies.slice``).

The memo lives across updates: an update drops the nodes of exactly the entities whose store
entry or ``entity_in`` / ``has_members`` rows changed. The property tests run random event
streams (facts feeding ``member_of`` through bundle rules, direct ``member_of`` facts, bundle
rules adding ``entity_in`` rows, entity upserts and deletes, batches, bundle swaps) and check
after every step that

* a slice built with the long-lived memo is the slice of the definition (computed from
  scratch with full ``entity_in`` lookups), and
* decisions equal those of an authorizer that keeps no memo at all.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.authorizer import Authorizer
from rune.ivm.values import EntityRef
from rune.policies import EventError
from rune.policies.slice import Slice

from .helpers import delete, doc, fact, group, req, upsert, user

DATALOG = [
    "member_of(U, G) :- member(U, G).",
    "member_of(U, G) :- member(U, G).\nentity_in(X, Y) :- link(X, Y).",
]
CEDAR = [
    """
    permit(principal in Group::"g0", action, resource) when { resource has owner };
    permit(principal, action, resource in Doc::"d0") when { resource.owner in principal };
    forbid(principal, action, resource) when { principal has boss && principal.boss in resource };
    """,
    'permit(principal, action, resource) when { context.who in Group::"g1" };',
]

USERS = [user(f"u{i}") for i in range(2)]
GROUPS = [group(f"g{i}") for i in range(2)]
DOCS = [doc(f"d{i}") for i in range(2)]
ALL = USERS + GROUPS + DOCS

fact_ops = st.one_of(
    st.builds(
        lambda op, u, g: fact(op, "member", u, g),
        st.sampled_from(["assert", "retract"]),
        st.sampled_from(USERS + GROUPS),
        st.sampled_from(GROUPS),
    ),
    st.builds(
        lambda op, a, b: fact(op, "member_of", a, b),
        st.sampled_from(["assert", "retract"]),
        st.sampled_from(USERS + GROUPS[:1] + DOCS[:1]),
        st.sampled_from(GROUPS[1:] + DOCS[:1]),
    ),
    st.builds(
        lambda op, a, b: fact(op, "link", a, b),
        st.sampled_from(["assert", "retract"]),
        st.sampled_from(USERS),
        st.sampled_from(DOCS),
    ),
)
attrs = st.fixed_dictionaries(
    {},
    optional={
        "owner": st.sampled_from(USERS).map(lambda u: {"__entity": u}),
        "boss": st.sampled_from(ALL).map(lambda u: {"__entity": u}),
        "n": st.integers(0, 2),
    },
)
entity_ops = st.one_of(
    st.builds(
        lambda u, a, ps: upsert(u, a, ps),
        st.sampled_from(ALL),
        attrs,
        st.lists(st.sampled_from(GROUPS + DOCS[:1]), max_size=2, unique_by=lambda g: g["id"]),
    ),
    st.builds(delete, st.sampled_from(ALL)),
)
checks = st.builds(
    lambda p, a, r, who: ("check", req(p, a, r, context={"who": {"__entity": who}})),
    st.sampled_from(USERS + GROUPS),
    st.sampled_from(["read", "write"]),
    st.sampled_from(DOCS),
    st.sampled_from(ALL),
)
updates = st.one_of(
    fact_ops.map(lambda e: ("apply", e)),
    fact_ops.map(lambda e: ("apply", e)),
    entity_ops.map(lambda e: ("apply", e)),
    st.lists(st.one_of(fact_ops, entity_ops), min_size=1, max_size=4).map(lambda b: ("batch", b)),
    st.tuples(st.integers(0, 1), st.integers(0, 1)).map(lambda t: ("bundle", t)),
)
steps = st.lists(st.tuples(updates, st.lists(checks, min_size=1, max_size=2)), max_size=25).map(
    lambda pairs: [step for update, cs in pairs for step in (update, *cs)]
)

START = [
    upsert(group("g1"), {}, [group("g0")]),
    upsert(doc("d1"), {"owner": {"__entity": user("u0")}}, [doc("d0")]),
    fact("assert", "member", user("u1"), group("g1")),
]

_VERTEX = re.compile(r"cycle containing vertex `[^`]*`")


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    # Which vertex of a cycle Cedar names varies from call to call (hash order).
    out = {k: v for k, v in d.items() if k != "latency_us"}
    out["errors"] = [_VERTEX.sub("cycle", e) for e in d["errors"]]
    return out


def _ref(obj: dict[str, str]) -> EntityRef:
    return EntityRef(obj["type"], obj["id"])


def _entities(text: str) -> dict[EntityRef, tuple[bytes, frozenset[EntityRef]]]:
    return {
        _ref(e["uid"]): (
            orjson.dumps(
                {k: e[k] for k in ("attrs", "tags") if k in e}, option=orjson.OPT_SORT_KEYS
            ),
            frozenset(_ref(p) for p in e["parents"]),
        )
        for e in orjson.loads(text)
    }


def _definition(az: Authorizer, seeds: list[EntityRef]) -> str:
    """The slice by its definition: R = closure of the seeds under attribute references; each
    entity of R with its ``entity_in`` ancestors in R (all of them read from the views)."""
    store = az._store
    r: set[EntityRef] = set()
    todo = list(seeds)
    while todo:
        uid = todo.pop()
        if uid not in r:
            r.add(uid)
            entity = store.get(uid)
            todo.extend(entity.refs if entity is not None else ())
    out = []
    for uid in r:
        ancestors = {row[1] for row in az.engine.lookup("entity_in", (uid, None))}
        parents = [{"type": a.type, "id": a.id} for a in sorted(ancestors & r - {uid})]
        entity = store.get(uid)
        if entity is None and not parents:
            continue
        body: dict[str, Any] = {"attrs": {}} if entity is None else {"attrs": entity.attrs}
        if entity is not None and entity.tags is not None:
            body["tags"] = entity.tags
        out.append({"uid": {"type": uid.type, "id": uid.id}, **body, "parents": parents})
    return orjson.dumps(out).decode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_memo_across_updates_equals_no_memo(script: list[tuple[str, Any]]) -> None:
    kept = Authorizer(cache_entries=0)
    fresh = Authorizer(cache_entries=0)
    fresh._memo.max_entries = 0  # every slice read from the views
    version = 1
    for az in (kept, fresh):
        az.load_bundle({"version": version, "datalog": DATALOG[0], "cedar": CEDAR[0]})
        az.apply_batch(START)  # groups and d0 with members from the start
    for kind, arg in script:
        if kind == "check":
            assert _strip(kept.check(arg)) == _strip(fresh.check(arg))
            seeds = [_ref(arg[k]) for k in ("principal", "action", "resource")]
            seeds.append(_ref(arg["context"]["who"]["__entity"]))
            sl = Slice(kept._store, kept.engine, kept._memo)
            sl.add(seeds)
            assert _entities(sl.to_json()) == _entities(_definition(kept, seeds))
        elif kind in ("apply", "batch"):
            errors = []
            for az in (kept, fresh):
                try:
                    az.apply(arg) if kind == "apply" else az.apply_batch(arg)
                except EventError as exc:  # a self-parent, say: refused by both
                    errors.append(str(exc))
            assert len(errors) in (0, 2) and len(set(errors)) <= 1
        else:
            version += 1
            bundle = {"version": version, "datalog": DATALOG[arg[0]], "cedar": CEDAR[arg[1]]}
            kept.load_bundle(bundle)
            fresh.load_bundle(bundle)
    assert len(fresh._memo) == 0


def test_updates_drop_only_the_entities_they_change() -> None:
    az = Authorizer(cache_entries=0)
    az.load_bundle(
        {
            "version": 1,
            "datalog": DATALOG[0],
            "cedar": 'permit(principal in Group::"g0", action, resource);',
        }
    )
    az.apply_batch([upsert(u, {}, [group("g1")]) for u in USERS] + [upsert(group("g1"), {}, [])])
    for u in USERS:
        az.check(req(u, "read", doc("d")))
    memo = az._memo
    cached = {_ref(u) for u in USERS} | {_ref(group("g0")), _ref(doc("d"))}
    assert {uid for uid in cached if memo.get(uid) is not None} == cached
    az.apply(fact("assert", "unrelated", user("u0")))  # no relation a slice reads
    assert {uid for uid in cached if memo.get(uid) is not None} == cached
    az.apply(fact("assert", "member", user("u1"), group("g0")))  # member_of(u1, g0)
    assert memo.get(_ref(user("u1"))) is None  # its entity_in rows changed
    assert memo.get(_ref(group("g0"))) is None  # has_members(g0) changed
    assert memo.get(_ref(user("u0"))) is not None and memo.get(_ref(doc("d"))) is not None
    assert az.check(req(user("u1"), "read", doc("d")))["decision"] == "allow"
    az.apply(fact("retract", "member", user("u1"), group("g0")))
    assert memo.get(_ref(user("u1"))) is None and memo.get(_ref(group("g0"))) is None
    assert az.check(req(user("u1"), "read", doc("d")))["decision"] == "deny"
    az.apply(upsert(user("u2"), {"x": 1}, [group("g1")]))  # the entity itself changed
    assert memo.get(_ref(user("u2"))) is None and memo.get(_ref(user("u0"))) is not None
    az.apply(upsert(group("g1"), {}, [group("g0")]))  # g1 in g0: every user's rows change
    assert all(memo.get(_ref(u)) is None for u in USERS)
    assert az.check(req(user("u0"), "read", doc("d")))["decision"] == "allow"


def test_a_slice_larger_than_the_bound_is_an_error(monkeypatch: Any) -> None:
    monkeypatch.setattr("rune.policies.slice.MAX_SLICE_ENTITIES", 4)
    az = Authorizer(cache_entries=0)
    az.load_bundle({"version": 1, "cedar": "permit(principal, action, resource);"})
    chain = [upsert(user(f"c{i}"), {"next": {"__entity": user(f"c{i + 1}")}}) for i in range(5)]
    az.apply_batch(chain)
    far = az.check(req(user("c0"), "read", doc("d")))  # c0..c5, the action and the doc
    assert far["decision"] == "deny" and far["error"] == (
        "slice: the Cedar entity slice exceeds 4 entities"
    )
    near = az.check(req(user("c4"), "read", doc("d")))  # c4, c5, the action and the doc
    assert near["decision"] == "allow" and "error" not in near


def _check(az: Authorizer, p: dict[str, str], a: str, r: dict[str, str]) -> tuple[str, list[str]]:
    d = az.check(req(p, a, r))
    assert "error" not in d, d
    return d["decision"], d["reasons"]


def test_action_groups_in_a_list_reach_the_slice() -> None:
    # The elements of `action in [...]` are entity literals too (under "entities" in Cedar's
    # JSON form): without them in the slice the action had no parents and was denied.
    az = Authorizer(cache_entries=0)
    az.load_bundle(
        {
            "version": 1,
            "cedar": 'permit(principal, action in [Action::"viewing", Action::"other"], resource);',
        }
    )
    az.apply(upsert({"type": "Action", "id": "open"}, {}, [{"type": "Action", "id": "viewing"}]))
    assert _check(az, user("a"), "open", doc("d")) == ("allow", ["policy0"])
    assert _check(az, user("a"), "other", doc("d")) == ("allow", ["policy0"])
    assert _check(az, user("a"), "edit", doc("d")) == ("deny", [])
    az.apply(upsert({"type": "Action", "id": "open"}, {}, []))  # the memo follows the change
    assert _check(az, user("a"), "open", doc("d")) == ("deny", [])


def test_template_link_values_reach_the_slice() -> None:
    # Cedar accepts a slot value as a bare {"type", "id"} as well as {"__entity": ...}.
    template = {
        "effect": "permit",
        "principal": {"op": "in", "slot": "?principal"},
        "action": {"op": "All"},
        "resource": {"op": "in", "slot": "?resource"},
        "conditions": [],
    }
    cedar = {
        "staticPolicies": {},
        "templates": {"t": template},
        "templateLinks": [
            {
                "templateId": "t",
                "newId": "bare",
                "values": {"?principal": group("g"), "?resource": {"type": "Folder", "id": "f"}},
            },
            {
                "templateId": "t",
                "newId": "escaped",
                "values": {
                    "?principal": {"__entity": group("h")},
                    "?resource": {"__entity": {"type": "Folder", "id": "f"}},
                },
            },
        ],
    }
    az = Authorizer(cache_entries=0)
    az.load_bundle({"version": 1, "cedar": cedar})
    az.apply_batch(
        [
            upsert(user("a"), {}, [group("g")]),
            upsert(user("b"), {}, [group("h")]),
            upsert(doc("d"), {}, [{"type": "Folder", "id": "f"}]),
        ]
    )
    assert _check(az, user("a"), "read", doc("d")) == ("allow", ["bare"])
    assert _check(az, user("b"), "read", doc("d")) == ("allow", ["escaped"])
    assert _check(az, user("c"), "read", doc("d")) == ("deny", [])


def test_every_entity_literal_form_is_a_slice_seed() -> None:
    az = Authorizer(cache_entries=0)
    az.load_bundle(
        {
            "version": 1,
            "cedar": """
            permit(principal == User::"eq", action == Action::"a1", resource in Folder::"in");
            permit(principal is User in Group::"isin", action in Action::"a2", resource);
            permit(principal, action in [Action::"l1", Action::"l2"], resource)
              when { principal in [Group::"s1", Group::"s2"] && context.x == {e: User::"rec"}
                     && resource is Doc in Folder::"cond" };
            """,
        }
    )
    assert az.bundle is not None
    assert {(e.type, e.id) for e in az.bundle.literals} == {
        ("User", "eq"),
        ("Action", "a1"),
        ("Folder", "in"),
        ("Group", "isin"),
        ("Action", "a2"),
        ("Action", "l1"),
        ("Action", "l2"),
        ("Group", "s1"),
        ("Group", "s2"),
        ("User", "rec"),
        ("Folder", "cond"),
    }


def test_a_cycle_outside_the_slice_fails_closed_as_cedar_does() -> None:
    # Cedar refuses entity data with a cycle anywhere; the slice of a request need not
    # contain the cycle, so RUNE checks the whole hierarchy (built-in relation in_cycle).
    az = Authorizer()
    az.load_bundle({"version": 1, "cedar": "permit(principal, action, resource);"})
    az.apply_batch([upsert(group("x"), {}, [group("y")]), upsert(user("a"), {}, [])])
    assert _check(az, user("a"), "read", doc("d")) == ("allow", ["policy0"])
    az.apply(upsert(group("y"), {}, [group("x")]))  # closes x -> y -> x, far from User::"a"
    d = az.check(req(user("a"), "read", doc("d")))
    assert d["decision"] == "deny" and d["reasons"] == [] and "error" not in d
    assert len(d["errors"]) == 1 and "cycle containing vertex `Group::" in d["errors"][0]
    az.apply(upsert(group("y"), {}, []))
    assert _check(az, user("a"), "read", doc("d")) == ("allow", ["policy0"])
    with pytest.raises(EventError):  # maintained from the hierarchy only
        az.apply(fact("assert", "in_cycle", group("x")))
