"""In-process check latency of ``rune.Authorizer`` on the "drive" workload (docs/design.md §6).

    python perf/bench_authorizer.py --scale 0.01      # seconds
    python perf/bench_authorizer.py --scale 0.1       # a minute or two

Five figures, each p50/p99 latency of ``Authorizer.check`` (wall clock around the call; in
the JSON line also the p50/p99 of the thread's CPU time, which leaves out the time the process
waited for a core on this shared machine) and checks/s on one core:

- datalog: the drive program (on-demand ``allow``), no Cedar policies, cache off;
- cedar:   the same graph as Cedar entities (users in groups, nested groups, docs in nested
           folders, an ``owner`` attribute), Cedar policies only, cache off;
- hybrid:  drive program + entities + Cedar policies (permit by owner, forbid on locked docs);
- cache:   the hybrid setup with the cache on, every request already cached (hits only);
- hybrid_updates: the hybrid requests again (entities seen before), with one single fact change
           (``drive.changes``: memberships, folder moves, grants) applied before every 10th
           check; only the checks are timed. Each change empties the decision cache, so this
           is the miss path under a steady update stream.

Targets (docs/design.md §6): datalog p99 <= 50 us and >= 100k checks/s; Cedar p99 <= 200 us;
cache hit <= 20 us. Prints a table, then one JSON line with every figure; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rune.authorizer import Authorizer
from rune.ivm.values import EntityRef
from rune.workloads.drive_contract import entity_events, fact_events

try:
    import drive  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - drive.py is written by another engineer
    drive = None

CEDAR = """
@id("owner-all") permit(principal, action, resource)
  when { resource has owner && resource.owner == principal };
@id("admins-read") permit(principal in Group::"g0", action == Action::"read", resource);
@id("locked") forbid(principal, action == Action::"write", resource)
  when { resource has locked && resource.locked };
"""


def _j(v: object) -> object:
    return {"type": v.type, "id": v.id} if isinstance(v, EntityRef) else v


def _small_drive(scale: float, seed: int) -> tuple[dict[str, list[tuple[Any, ...]]], str]:
    """Fallback workload when perf/drive.py is absent."""
    rng = random.Random(seed)
    n_users, n_groups, n_folders, n_docs = (
        max(1, int(x * scale)) for x in (100_000, 10_000, 50_000, 500_000)
    )
    U = lambda i: EntityRef("User", f"u{i}")  # noqa: E731
    G = lambda i: EntityRef("Group", f"g{i}")  # noqa: E731
    F = lambda i: EntityRef("Folder", f"f{i}")  # noqa: E731
    D = lambda i: EntityRef("Doc", f"d{i}")  # noqa: E731
    facts: dict[str, list[tuple[Any, ...]]] = {
        "member": [(U(u), G(rng.randrange(n_groups))) for u in range(n_users) for _ in range(3)],
        "subgroup": [(G(g), G(rng.randrange(g))) for g in range(1, n_groups)],
        "folder_parent": [(F(f), F(rng.randrange(f))) for f in range(1, n_folders)],
        "doc_folder": [(D(d), F(rng.randrange(n_folders))) for d in range(n_docs)],
        "grant": [
            (U(rng.randrange(n_users)), "viewer", F(rng.randrange(n_folders)))
            for _ in range(n_docs // 5)
        ],
    }
    program = """
    .on_demand allow.
    in_group(U, G) :- member(U, G).
    in_group(U, G) :- in_group(U, H), subgroup(H, G).
    ancestor(F, A) :- folder_parent(F, A).
    ancestor(F, A) :- ancestor(F, P), folder_parent(P, A).
    folder_role(S, R, F) :- grant(S, R, F).
    folder_role(S, R, F) :- ancestor(F, A), grant(S, R, A).
    allow(U, Action::"read", D) :- doc_folder(D, F), folder_role(U, _, F).
    allow(U, Action::"read", D) :- doc_folder(D, F), in_group(U, G), folder_role(G, _, F).
    """
    return facts, program


def _queries(
    facts: dict[str, list[tuple[Any, ...]]], n: int, seed: int
) -> list[tuple[Any, Any, Any]]:
    if drive is not None:
        return list(drive.check_queries(facts, n, seed))
    rng = random.Random(seed)
    users = [u for u, _ in facts["member"]]
    docs = [d for d, _ in facts["doc_folder"]]
    return [(rng.choice(users), EntityRef("Action", "read"), rng.choice(docs)) for _ in range(n)]


def _apply(az: Authorizer, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 50_000):
        az.apply_batch(events[i : i + 50_000])


def _summary(lat: list[int], cpu: list[int], total_s: float) -> dict[str, float]:
    lat.sort()
    cpu.sort()
    n = len(lat)
    p99 = min(n - 1, int(n * 0.99))
    return {
        "mean_us": sum(lat) / n / 1000,
        "max_us": lat[-1] / 1000,
        "p50_us": lat[n // 2] / 1000,
        "p99_us": lat[p99] / 1000,
        "cpu_p50_us": cpu[n // 2] / 1000,
        "cpu_p99_us": cpu[p99] / 1000,
        "checks_per_s": n / total_s,
    }


def _measure(
    az: Authorizer, requests: list[dict[str, Any]], warm: bool = False
) -> dict[str, float]:
    if warm:
        for r in requests:
            az.check(r)
    lat, cpu = [], []
    gc.collect()
    gc.disable()
    t_start = time.perf_counter()
    for r in requests:
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        az.check(r)
        lat.append(time.perf_counter_ns() - t0)
        cpu.append(time.thread_time_ns() - c0)
    total = time.perf_counter() - t_start
    gc.enable()
    return _summary(lat, cpu, total)


def _change_events(change: Any) -> list[dict[str, Any]]:
    return [
        {"op": op, "fact": [rel, *(_j(v) for v in row)]}
        for op, part in (("retract", change.delete), ("assert", change.insert))
        for rel, rows in part.items()
        for row in rows
    ]


def _measure_with_updates(
    az: Authorizer, requests: list[dict[str, Any]], updates: list[list[dict[str, Any]]], every: int
) -> dict[str, float]:
    lat, cpu = [], []
    gc.collect()
    gc.disable()
    pending = iter(updates)
    for i, r in enumerate(requests):
        if i % every == 0:
            batch = next(pending, None)
            if batch:
                az.apply_batch(batch)
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        az.check(r)
        lat.append(time.perf_counter_ns() - t0)
        cpu.append(time.thread_time_ns() - c0)
    gc.enable()
    return _summary(lat, cpu, sum(lat) / 1e9)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--checks", type=int, default=20_000)
    args = ap.parse_args()

    t = time.perf_counter()
    if drive is not None:
        facts, program = drive.generate(args.scale, args.seed), drive.drive_program()
    else:
        facts, program = _small_drive(args.scale, args.seed)
    print(
        f"workload: {sum(map(len, facts.values()))} base facts "
        f"({'perf/drive.py' if drive else 'fallback'}), scale {args.scale}",
        file=sys.stderr,
    )
    queries = _queries(facts, args.checks, args.seed)
    requests = [
        {"id": f"r{i}", "principal": _j(p), "action": _j(a), "resource": _j(r), "context": {}}
        for i, (p, a, r) in enumerate(queries)
    ]
    facts_as_events = fact_events(facts)
    entities = entity_events(facts, args.seed)
    figures: dict[str, Any] = {"scale": args.scale, "seed": args.seed, "checks": len(requests)}

    az = Authorizer(cache_entries=0)
    az.load_bundle({"version": 1, "datalog": program, "cedar": ""})
    _apply(az, facts_as_events)
    print(f"datalog setup {time.perf_counter() - t:.1f}s", file=sys.stderr)
    figures["datalog"] = _measure(az, requests, warm=True)
    allowed = sum(az.check(r)["decision"] == "allow" for r in requests[:2000])
    figures["datalog"]["allow_share"] = allowed / min(2000, len(requests))
    del az

    t = time.perf_counter()
    az = Authorizer(cache_entries=0)
    az.load_bundle({"version": 1, "datalog": "", "cedar": CEDAR})
    _apply(az, entities)
    print(f"cedar setup {time.perf_counter() - t:.1f}s", file=sys.stderr)
    n_cedar = min(len(requests), 5000)
    figures["cedar"] = _measure(az, requests[:n_cedar], warm=False)
    del az

    t = time.perf_counter()
    az = Authorizer(cache_entries=len(requests) + 1)
    az.load_bundle({"version": 1, "datalog": program, "cedar": CEDAR})
    _apply(az, facts_as_events)
    _apply(az, entities)
    print(f"hybrid setup {time.perf_counter() - t:.1f}s", file=sys.stderr)
    hybrid = Authorizer(cache_entries=0)
    figures["hybrid"] = _measure(az, requests[:n_cedar], warm=False)  # all misses
    figures["cache_hit"] = _measure(az, requests[:n_cedar], warm=False)  # all hits now
    figures["cache"] = az.cache_stats().to_json()
    del hybrid
    if drive is not None:
        every = 10
        per_kind = n_cedar // every // len(drive.KINDS) + 1
        _, stream, _ = drive.changes(args.scale, args.seed, per_kind)
        updates = [_change_events(c) for c in stream]
        figures["hybrid_updates"] = _measure_with_updates(az, requests[:n_cedar], updates, every)
        figures["hybrid_updates"]["updates"] = min(len(updates), -(-n_cedar // every))

    targets = {
        "datalog": ("p99 <= 50 us, >= 100k checks/s", 50),
        "cedar": ("p99 <= 200 us", 200),
        "hybrid": ("p99 <= 200 us", 200),
        "cache_hit": ("<= 20 us", 20),
        "hybrid_updates": ("p99 <= 200 us (misses under updates)", 200),
    }
    print(f"{'mode':<14} {'p50 us':>8} {'p99 us':>8} {'cpu p99':>8} {'checks/s':>10}  target")
    for mode, (text, _) in targets.items():
        if mode not in figures:
            continue
        f = figures[mode]
        print(
            f"{mode:<14} {f['p50_us']:>8.1f} {f['p99_us']:>8.1f} {f['cpu_p99_us']:>8.1f} "
            f"{f['checks_per_s']:>10.0f}  {text}"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
