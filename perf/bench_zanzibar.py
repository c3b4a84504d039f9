"""Zanzibar model benchmark: a SpiceDB schema (org / group / folder / document) compiled by
rune.models next to the same permissions written in Datalog by hand.

    python perf/bench_zanzibar.py --scale 0.01   # 10k relationships; --scale 1.0: 1M

Prints load time, checks/s with p50/p99, LookupResources / LookupSubjects latency and the
latency of single-relationship updates (assert then retract), for both programs, and checks
that both give the same answers on the sampled checks. Figures only, no assertions on time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from rune.ivm import Engine
from rune.models import ZanzibarView, compile_spicedb

SCHEMA = """
definition user {}
definition org {
  relation admin: user
}
definition group {
  relation member: user | group#member
}
definition folder {
  relation org: org
  relation parent: folder
  relation viewer: user | group#member
  permission view = viewer + parent->view + org->admin
}
definition document {
  relation folder: folder
  relation owner: user
  relation viewer: user | group#member
  permission view = owner + viewer + folder->view
}
"""

HAND = """
member(U, G) :- member_user(G, U).
member(U, G) :- member_group(G, S), member(U, S).
ancestor(F, F) :- folder_node(F).
ancestor(F, A) :- parent(F, P), ancestor(P, A).
folder_node(F) :- parent(F, _).
folder_node(F) :- in_folder(_, F).
view(D, U) :- owner(D, U).
view(D, U) :- viewer_user(D, U).
view(D, U) :- viewer_group(D, G), member(U, G).
view(D, U) :- in_folder(D, F), ancestor(F, A), folder_viewer_user(A, U).
view(D, U) :- in_folder(D, F), ancestor(F, A), folder_viewer_group(A, G), member(U, G).
view(D, U) :- in_folder(D, F), ancestor(F, A), folder_org(A, O), org_admin(O, U).
.on_demand view.
"""


def workload(n: int, seed: int) -> list[tuple[str, ...]]:
    """About ``n`` relationships: users in nested groups, a folder forest, documents."""
    rng = random.Random(seed)
    users = max(10, n // 10)
    groups = max(2, n // 100)
    folders = max(2, n // 50)
    docs = max(2, n // 8)
    out: list[tuple[str, ...]] = []
    for o in range(max(1, folders // 100)):
        out.append(("org", f"o{o}", "admin", "user", f"u{rng.randrange(users)}", ""))
    for g in range(groups):
        for _ in range(4):
            out.append(("group", f"g{g}", "member", "user", f"u{rng.randrange(users)}", ""))
        if g and rng.random() < 0.3:
            out.append(("group", f"g{g}", "member", "group", f"g{rng.randrange(g)}", "member"))
    for f in range(folders):
        if f and rng.random() < 0.8:
            out.append(
                ("folder", f"f{f}", "parent", "folder", f"f{rng.randrange(max(0, f - 20), f)}", "")
            )
        out.append(
            ("folder", f"f{f}", "org", "org", f"o{rng.randrange(max(1, folders // 100))}", "")
        )
        out.append(("folder", f"f{f}", "viewer", "group", f"g{rng.randrange(groups)}", "member"))
    while len(out) < n:
        d = rng.randrange(docs)
        out.append(("document", f"d{d}", "folder", "folder", f"f{rng.randrange(folders)}", ""))
        out.append(("document", f"d{d}", "owner", "user", f"u{rng.randrange(users)}", ""))
        out.append(("document", f"d{d}", "viewer", "user", f"u{rng.randrange(users)}", ""))
    return out[:n]


def hand_facts(rels: list[tuple[str, ...]]) -> dict[str, list[tuple[str, ...]]]:
    m = {
        ("group", "member", "user"): "member_user",
        ("group", "member", "group"): "member_group",
        ("folder", "parent", "folder"): "parent",
        ("folder", "org", "org"): "folder_org",
        ("folder", "viewer", "user"): "folder_viewer_user",
        ("folder", "viewer", "group"): "folder_viewer_group",
        ("document", "folder", "folder"): "in_folder",
        ("document", "owner", "user"): "owner",
        ("document", "viewer", "user"): "viewer_user",
        ("document", "viewer", "group"): "viewer_group",
        ("org", "admin", "user"): "org_admin",
    }
    out: dict[str, list[tuple[str, ...]]] = {}
    for ot, oid, rel, st, sid, _ in rels:
        out.setdefault(m[(ot, rel, st)], []).append((oid, sid))
    return out


def timed(fn: Callable[[], object], n: int) -> tuple[float, float, float]:
    lat = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        lat.append((time.perf_counter_ns() - t) / 1000)
    total = time.perf_counter() - start
    lat.sort()
    return n / total, statistics.median(lat), lat[int(len(lat) * 0.99) - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.01, help="1.0 = 1M relationships")
    ap.add_argument("--checks", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    n = int(1_000_000 * args.scale)
    rels = workload(n, args.seed)
    users = max(10, n // 10)
    docs = max(2, n // 8)
    rng = random.Random(args.seed + 1)
    sample = [(f"d{rng.randrange(docs)}", f"u{rng.randrange(users)}") for _ in range(args.checks)]
    print(f"relationships: {len(rels):,}  checks: {args.checks:,}")

    compiled = compile_spicedb(SCHEMA)
    t = time.perf_counter()
    eng = Engine(compiled.datalog)
    eng.update(insert={"relationship": rels})
    load_z = time.perf_counter() - t
    view = ZanzibarView(eng)
    t = time.perf_counter()
    hand = Engine(HAND)
    hand.update(insert=hand_facts(rels))
    load_h = time.perf_counter() - t
    print(f"load: compiled {load_z:.2f}s  hand-written {load_h:.2f}s")

    it = iter(sample * 2)
    z_answers = [view.check(f"document:{d}", "view", f"user:{u}") for d, u in sample[:2000]]
    h_answers = [hand.contains("view", (d, u)) for d, u in sample[:2000]]
    assert z_answers == h_answers, "the compiled model and the hand-written program disagree"
    print(f"answers agree on {len(z_answers)} checks ({sum(z_answers)} allowed)")

    def z_check() -> None:
        d, u = next(it)
        view.check(f"document:{d}", "view", f"user:{u}")

    it2 = iter(sample * 2)

    def h_check() -> None:
        d, u = next(it2)
        hand.contains("view", (d, u))

    for name, fn in (("compiled", z_check), ("hand-written", h_check)):
        rate, p50, p99 = timed(fn, args.checks)
        print(f"check {name:>12}: {rate:,.0f}/s  p50 {p50:.1f} us  p99 {p99:.1f} us")

    lk = [f"u{rng.randrange(users)}" for _ in range(200)]
    li = iter(lk * 2)
    rate, p50, p99 = timed(
        lambda: view.lookup_resources("document", "view", f"user:{next(li)}", limit=1000), 200
    )
    print(f"lookup resources compiled: p50 {p50 / 1000:.2f} ms  p99 {p99 / 1000:.2f} ms")
    li2 = iter(lk * 2)
    rate, p50, p99 = timed(lambda: list(hand.lookup("view", (None, next(li2)))), 200)
    print(f"lookup resources hand    : p50 {p50 / 1000:.2f} ms  p99 {p99 / 1000:.2f} ms")
    ld = iter([f"d{rng.randrange(docs)}" for _ in range(400)])
    rate, p50, p99 = timed(
        lambda: view.lookup_subjects(f"document:{next(ld)}", "view", "user", limit=1000), 200
    )
    print(f"lookup subjects compiled : p50 {p50 / 1000:.2f} ms  p99 {p99 / 1000:.2f} ms")

    groups = max(2, n // 100)
    upd = [
        ("group", f"g{rng.randrange(groups)}", "member", "user", f"new{i}", "") for i in range(300)
    ]
    ui = iter(upd)

    def z_update() -> None:
        row = next(ui)
        eng.update(insert={"relationship": [row]})
        eng.update(delete={"relationship": [row]})

    rate, p50, p99 = timed(z_update, len(upd))
    print(f"update compiled (assert+retract a group member): p50 {p50:.0f} us  p99 {p99:.0f} us")
    hi = iter(upd)

    def h_update() -> None:
        row = next(hi)
        hand.update(insert={"member_user": [(row[1], row[4])]})
        hand.update(delete={"member_user": [(row[1], row[4])]})

    rate, p50, p99 = timed(h_update, len(upd))
    print(f"update hand     (assert+retract a group member): p50 {p50:.0f} us  p99 {p99:.0f} us")


if __name__ == "__main__":
    main()
