from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rune.authorizer import Authorizer
from rune.ivm.values import EntityRef
from rune.policies.cache import ENTRY_OVERHEAD, DecisionCache

from .helpers import action, doc, fact, group, req, upsert, user

DATALOG = [
    """
    member_of(U, G) :- member(U, G).
    allow(U, Action::"read", D) :- entity_in(U, G), grant(G, D).
    deny(U, A, D) :- banned(U), allow(U, A, D).
    """,
    """
    allow(U, Action::"read", D) :- grant(U, D), member(U, _).
    """,
]
CEDAR = [
    """
    permit(principal in Group::"g0", action, resource) when { resource has open && resource.open };
    forbid(principal, action, resource) when { principal has blocked && principal.blocked };
    """,
    'permit(principal, action == Action::"write", resource in Doc::"d0");',
]

USERS = [user(f"u{i}") for i in range(3)]
GROUPS = [group(f"g{i}") for i in range(3)]
DOCS = [doc(f"d{i}") for i in range(3)]

fact_ops = st.one_of(
    st.tuples(
        st.sampled_from(["assert", "retract"]),
        st.just("member"),
        st.sampled_from(USERS),
        st.sampled_from(GROUPS),
    ),
    st.tuples(
        st.sampled_from(["assert", "retract"]),
        st.just("grant"),
        st.sampled_from(USERS + GROUPS),
        st.sampled_from(DOCS),
    ),
    st.tuples(st.sampled_from(["assert", "retract"]), st.just("banned"), st.sampled_from(USERS)),
).map(lambda t: fact(t[0], t[1], *t[2:]))
entity_ops = st.one_of(
    st.builds(
        lambda u, blocked, parents: upsert(u, {"blocked": blocked}, parents),
        st.sampled_from(USERS),
        st.booleans(),
        st.lists(st.sampled_from(GROUPS), max_size=2, unique_by=lambda g: g["id"]),
    ),
    st.builds(
        lambda g, parents: upsert(group(f"g{g}"), {}, [group(f"g{p}") for p in parents if p < g]),
        st.integers(0, 2),
        st.lists(st.integers(0, 2), max_size=1),
    ),
    st.builds(
        lambda d, is_open, parents: upsert(d, {"open": is_open}, parents),
        st.sampled_from(DOCS),
        st.booleans(),
        st.lists(st.sampled_from(DOCS[:1]), max_size=1),
    ).filter(lambda e: e["entity"]["uid"] not in e["entity"]["parents"]),
    st.builds(lambda u: {"op": "delete", "entity": {"uid": u}}, st.sampled_from(USERS + DOCS)),
)
checks = st.builds(
    lambda u, a, d: ("check", req(u, a, d)),
    st.sampled_from(USERS),
    st.sampled_from(["read", "write"]),
    st.sampled_from(DOCS),
)
steps = st.lists(
    st.one_of(
        checks,
        checks,
        checks,
        fact_ops.map(lambda e: ("apply", e)),
        entity_ops.map(lambda e: ("apply", e)),
        st.lists(st.one_of(fact_ops, entity_ops), min_size=1, max_size=4).map(
            lambda b: ("batch", b)
        ),
        st.tuples(st.integers(0, 1), st.integers(0, 1)).map(lambda t: ("bundle", t)),
    ),
    max_size=40,
)


def _strip(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "latency_us"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_cached_decisions_equal_uncached(script: list[tuple[str, Any]]) -> None:
    cached = Authorizer(cache_entries=8)
    plain = Authorizer(cache_entries=0)
    version = 1
    for az in (cached, plain):
        az.load_bundle({"version": version, "datalog": DATALOG[0], "cedar": CEDAR[0]})
    for kind, arg in script:
        if kind == "check":
            assert _strip(cached.check(arg)) == _strip(plain.check(arg))
            assert _strip(cached.check(arg)) == _strip(plain.check(arg))  # twice: a hit
        elif kind == "apply":
            cached.apply(arg)
            plain.apply(arg)
        elif kind == "batch":
            cached.apply_batch(arg)
            plain.apply_batch(arg)
        else:
            version += 1
            bundle = {"version": version, "datalog": DATALOG[arg[0]], "cedar": CEDAR[arg[1]]}
            cached.load_bundle(bundle)
            plain.load_bundle(bundle)
    assert plain.cache_stats().hits == 0
    if any(k == "check" for k, _ in script):
        assert cached.cache_stats().hits > 0


def test_idempotent_updates_keep_the_cache() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": "allow(U, A, D) :- grant(U, A, D)."})
    az.apply(fact("assert", "grant", user("a"), action("r"), doc("d")))
    az.apply(upsert(user("z"), {"k": [1, {"r": True}]}))
    r = req(user("a"), "r", doc("d"))
    az.check(r)
    az.apply(fact("assert", "grant", user("a"), action("r"), doc("d")))  # no change
    az.apply(upsert(user("z"), {"k": [1, {"r": True}]}))  # same entity again: no change
    az.check(r)
    stats = az.cache_stats()
    assert stats.hits == 1 and stats.misses == 1 and stats.invalidations == 0
    az.apply(fact("assert", "grant", user("b"), action("r"), doc("d")))
    az.check(r)
    assert az.cache_stats().misses == 2


def test_context_is_part_of_the_key() -> None:
    az = Authorizer()
    az.load_bundle(
        {"version": 1, "cedar": "permit(principal, action, resource) when { context.ok };"}
    )
    base = req(user("a"), "r", doc("d"))
    assert az.check({**base, "context": {"ok": True}})["decision"] == "allow"
    assert az.check({**base, "context": {"ok": False}})["decision"] == "deny"
    assert az.check({**base, "context": {"ok": 1}})["decision"] == "deny"
    assert az.check({**base, "id": "other", "context": {"ok": True}})["id"] == "other"
    assert az.cache_stats().hits == 1


def test_bounds_entries_and_bytes() -> None:
    cache: DecisionCache[int, str] = DecisionCache(max_entries=3, max_bytes=10_000)
    for i in range(5):
        cache.put(i, "v", 10)
    assert len(cache) == 3 and cache.stats().evictions == 2
    assert cache.get(0) is None and cache.get(4) == "v"
    small: DecisionCache[int, str] = DecisionCache(
        max_entries=100, max_bytes=3 * (ENTRY_OVERHEAD + 100)
    )
    for i in range(10):
        small.put(i, "v", 100)
    assert len(small) == 3 and small.stats().bytes <= small.max_bytes
    small.put(99, "huge", 10**9)
    assert small.get(99) is None
    small.invalidate()
    assert len(small) == 0 and small.stats().bytes == 0


def test_lru_order() -> None:
    cache: DecisionCache[str, int] = DecisionCache(max_entries=2)
    cache.put("a", 1, 1)
    cache.put("b", 2, 1)
    cache.get("a")
    cache.put("c", 3, 1)
    assert cache.get("a") == 1 and cache.get("b") is None


def test_entity_ref_keys_keep_bool_and_int_apart() -> None:
    az = Authorizer()
    az.load_bundle(
        {"version": 1, "cedar": "permit(principal, action, resource) when { context.v == 1 };"}
    )
    base = req(user("a"), "r", doc("d"))
    assert az.check({**base, "context": {"v": 1}})["decision"] == "allow"
    assert az.check({**base, "context": {"v": True}})["decision"] == "deny"
    assert EntityRef("User", "a") == EntityRef("User", "a")


def test_entries_expire_after_ttl(monkeypatch: Any) -> None:
    clock = [100.0]
    monkeypatch.setattr("rune.policies.cache.time.monotonic", lambda: clock[0])
    cache: DecisionCache[str, str] = DecisionCache(10, 1 << 20, ttl_s=5.0)
    cache.put("k", "v", 1)
    clock[0] = 104.9
    assert cache.get("k") == "v"
    clock[0] = 105.1
    assert cache.get("k") is None and len(cache) == 0 and cache.stats().misses == 1


def test_configure_shrinks_to_the_new_bounds() -> None:
    cache: DecisionCache[int, int] = DecisionCache(10, 1 << 20)
    for i in range(10):
        cache.put(i, i, 1)
    cache.configure(3, 1 << 20, 0.0)
    assert len(cache) == 3 and [cache.get(i) for i in (7, 8, 9)] == [7, 8, 9]
    assert cache.get(0) is None


def test_authorizer_clear_cache_counts_entries() -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""})
    az.check(req(user("a"), action("read"), doc("d")))
    assert az.clear_cache() == 1 and az.cache_stats().entries == 0
