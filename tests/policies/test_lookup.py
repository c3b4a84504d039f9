from __future__ import annotations

import itertools
import random

import pytest

from rune.authorizer import Authorizer
from rune.ivm.values import EntityRef
from rune.policies import RequestError
from rune.policies.lookup import MAX_PAGE

from .helpers import action, doc, fact, group, req, upsert, user

DATALOG = """
member_of(U, G) :- member(U, G).
allow(U, Action::"read", D) :- entity_in(U, G), grant(G, D).
allow(U, Action::"read", D) :- grant(U, D).
deny(U, A, D) :- banned(U, D), allow(U, A, D).
"""


def _world(seed: int, cedar: str = "") -> Authorizer:
    rng = random.Random(seed)
    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": DATALOG, "cedar": cedar})
    events = []
    for u in range(6):
        for g in range(4):
            if rng.random() < 0.3:
                events.append(fact("assert", "member", user(f"u{u}"), group(f"g{g}")))
    for g in range(4):
        if g and rng.random() < 0.5:
            events.append(upsert(group(f"g{g}"), parents=[group(f"g{rng.randrange(g)}")]))
    for d in range(30):
        events.append(upsert(doc(f"d{d:02}"), {"open": rng.random() < 0.3}))
        for who in (user(f"u{rng.randrange(6)}"), group(f"g{rng.randrange(4)}")):
            if rng.random() < 0.5:
                events.append(fact("assert", "grant", who, doc(f"d{d:02}")))
        if rng.random() < 0.1:
            events.append(fact("assert", "banned", user(f"u{rng.randrange(6)}"), doc(f"d{d:02}")))
    az.apply_batch(events)
    return az


def _all_pages(az: Authorizer, who: dict[str, str], limit: int) -> list[EntityRef]:
    out: list[EntityRef] = []
    cursor = None
    while True:
        page = az.lookup_resources(who, action("read"), "Doc", cursor=cursor, limit=limit)
        assert len(page.items) <= limit
        out.extend(page.items)
        cursor = page.cursor
        if cursor is None:
            return out


@pytest.mark.parametrize(
    ("seed", "cedar"),
    list(
        itertools.product(
            range(4),
            [
                "",
                "forbid(principal, action, resource) when { resource.open };",
                'permit(principal in Group::"g0", action == Action::"read", resource)\n'
                "when { resource.open };",
            ],
        )
    ),
)
def test_lookup_resources_is_exact_wrt_check(seed: int, cedar: str) -> None:
    az = _world(seed, cedar)
    for u in range(6):
        who = user(f"u{u}")
        expected = [
            EntityRef("Doc", f"d{d:02}")
            for d in range(30)
            if az.check(req(who, "read", doc(f"d{d:02}")))["decision"] == "allow"
        ]
        for limit in (1, 3, 100):
            assert _all_pages(az, who, limit) == expected


def test_lookup_subjects_is_exact_wrt_check() -> None:
    az = _world(11)
    for d in range(30):
        target = doc(f"d{d:02}")
        expected = [
            EntityRef("User", f"u{u}")
            for u in range(6)
            if az.check(req(user(f"u{u}"), "read", target))["decision"] == "allow"
        ]
        items: list[EntityRef] = []
        cursor = None
        while True:
            page = az.lookup_subjects(target, action("read"), "User", cursor=cursor, limit=2)
            items += page.items
            cursor = page.cursor
            if cursor is None:
                break
        assert items == expected


def test_bad_arguments() -> None:
    az = _world(1)
    with pytest.raises(RequestError):
        az.lookup_resources(user("u0"), action("read"), "Doc", limit=MAX_PAGE + 1)
    with pytest.raises(RequestError):
        az.lookup_resources(user("u0"), action("read"), "Doc", cursor="!!not-a-cursor")
    with pytest.raises(RequestError):
        az.lookup_resources({"type": "User"}, action("read"), "Doc")


def test_cedar_candidates_are_bounded() -> None:
    az = Authorizer(max_lookup_candidates=5)
    az.load_bundle({"version": 1, "cedar": "permit(principal, action, resource);"})
    az.apply_batch([upsert(doc(f"d{i}")) for i in range(4)])
    page = az.lookup_resources(user("u"), action("read"), "Doc")
    assert [i.id for i in page.items] == ["d0", "d1", "d2", "d3"]
    assert page.to_json()["cursor"] is None
    az.apply_batch([upsert(doc(f"e{i}")) for i in range(4)])
    with pytest.raises(RequestError):
        az.lookup_resources(user("u"), action("read"), "Doc")
