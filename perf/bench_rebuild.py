"""A program change off the owner thread: snapshot, from_snapshot + warm in a worker, swap.

    python perf/bench_rebuild.py [--scale 1.0] [--seed 1] [--checks 20000]

On the drive workload at ``--scale`` (loaded, and ``allow`` checked, as a serving engine is),
it measures, for a new program (the drive program plus one more derived relation):

* ``Engine.snapshot()`` on the owner thread (best and median of 5; wall and CPU);
* ``Engine.from_snapshot(new, snapshot)`` then ``warm(["allow"])`` in a worker thread (with
  ``--freeze``: between ``gc.disable()`` and ``gc.freeze(); gc.enable()``) while
  the main thread keeps calling ``contains("allow", ...)`` on the old engine: the worker's
  times, and the latency of those checks (p50/p99/max, and the longest gap between two
  answers) against the same checks with no worker;
* the first ``allow`` check on the warmed new engine;
* for comparison, ``replace(new)`` on the old engine (what blocks the owner thread today) and
  the first check after it (cold: it compiles the on-demand plans and builds their indexes).

Then checks that the new engine equals the replaced one (relation sizes, and ``allow`` on the
check sample). Prints a table, then one JSON line with every figure (the last line of
output). Never asserts on timings. See perf/README.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import drive

from rune.ivm import Engine, FactSnapshot

EXTRA = """
folder_owner(S, F) :- folder_role(S, "owner", F).
"""
"""What the new program adds to the drive program (a policy change)."""


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def latencies(lat_ns: list[int], gaps_ns: list[int]) -> dict[str, float]:
    s = sorted(x / 1000 for x in lat_ns)
    return {
        "n": len(s),
        "p50_us": round(pct(s, 0.5), 1),
        "p99_us": round(pct(s, 0.99), 1),
        "max_us": round(s[-1], 1) if s else 0.0,
        "longest_gap_ms": round(max(gaps_ns, default=0) / 1e6, 1),
    }


def check_loop(
    eng: Engine,
    queries: list[Any],
    done: threading.Event | None,
    rounds: int = 1,
    until_gc_quiet: list[Any] | None = None,
) -> dict[str, float]:
    """``contains("allow", q)`` over ``queries`` until ``done`` is set (or ``rounds`` times).

    With ``until_gc_quiet``, it goes on for one more pass over ``queries`` after ``done``
    (the worker's objects are then collected as the GC sees them, in this thread maybe)."""
    lat: list[int] = []
    gaps: list[int] = []
    clock = time.perf_counter_ns
    contains = eng.contains
    last = clock()
    passes = 0
    while True:
        for q in queries:
            t0 = clock()
            contains("allow", q)
            t1 = clock()
            lat.append(t1 - t0)
            gaps.append(t1 - last)
            last = t1
            if done is not None and done.is_set() and until_gc_quiet is None:
                return latencies(lat, gaps)
        if done is not None and done.is_set() and until_gc_quiet is not None:
            until_gc_quiet = None  # one more pass
        passes += 1
        if done is None and passes >= rounds:
            return latencies(lat, gaps)


def timed(fn: Any) -> tuple[Any, float, float]:
    c0 = time.thread_time()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.thread_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--checks", type=int, default=20_000, help="allow checks in the sample")
    ap.add_argument(
        "--freeze",
        action="store_true",
        help="gc.freeze() after the load (as the service's heap.settle()), and the worker "
        "disables the GC, builds and warms, freezes, re-enables it: no collection then "
        "traverses the new engine's objects",
    )
    args = ap.parse_args(argv)
    pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation) of collections

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            pauses.append((time.perf_counter(), 0.0, info["generation"]))
        elif pauses:
            start, _, gen = pauses[-1]
            pauses[-1] = (start, time.perf_counter() - start, gen)

    gc.callbacks.append(on_gc)
    fig: dict[str, Any] = {
        "bench": "ivm/rebuild",
        "scale": args.scale,
        "seed": args.seed,
        "loadavg_start": os.getloadavg()[0],
        "switch_interval_ms": sys.getswitchinterval() * 1000,
        "freeze": args.freeze,
    }
    log(f"generating drive scale={args.scale}")
    facts = drive.generate(args.scale, args.seed)
    queries = drive.check_queries(facts, args.checks, args.seed)
    new_source = drive.drive_program() + EXTRA
    log("loading")
    eng = Engine(drive.drive_program())
    eng.update(insert=facts)
    fig["base_facts"] = sum(map(len, facts.values()))
    del facts
    gc.collect()
    for q in queries[:2000]:  # serving: the on-demand plans and their indexes exist
        eng.contains("allow", q)
    if args.freeze:
        gc.collect()
        gc.freeze()

    log("snapshot x5")
    runs = []
    snap: FactSnapshot | None = None
    for _ in range(5):
        snap = None
        gc.collect()
        snap, wall, cpu = timed(eng.snapshot)
        runs.append((wall, cpu))
    assert snap is not None
    fig["snapshot"] = {
        "facts": len(snap),
        "best_ms": round(min(w for w, _ in runs) * 1000, 1),
        "median_ms": round(statistics.median(w for w, _ in runs) * 1000, 1),
        "cpu_best_ms": round(min(c for _, c in runs) * 1000, 1),
    }

    log("checks with no worker")
    fig["checks_alone"] = check_loop(eng, queries, None)

    log("from_snapshot + warm in a worker, checks on the old engine meanwhile")
    gc.collect()
    done = threading.Event()
    result: dict[str, Any] = {}

    def worker() -> None:
        if args.freeze:  # the recipe of docs/datalog.md: no collection sees the new engine
            gc.disable()
        try:
            new, wall, cpu = timed(lambda: Engine.from_snapshot(new_source, snap))
            result["from_snapshot"] = {"s": round(wall, 2), "cpu_s": round(cpu, 2)}
            _, wall, cpu = timed(lambda: new.warm(["allow"]))
            result["warm"] = {"s": round(wall, 3), "cpu_s": round(cpu, 3)}
            result["engine"] = new
        finally:
            if args.freeze:
                gc.freeze()
                gc.enable()
            done.set()

    thread = threading.Thread(target=worker)
    t0 = time.perf_counter()
    pauses.clear()
    thread.start()
    fig["checks_during_rebuild"] = check_loop(eng, queries, done, until_gc_quiet=pauses)
    thread.join()
    fig["rebuild_wall_s"] = round(time.perf_counter() - t0, 2)
    fig["gc_during_rebuild"] = {
        "collections": len(pauses),
        "longest_ms": round(max((p for _, p, _ in pauses), default=0) * 1000, 1),
        "total_ms": round(sum(p for _, p, _ in pauses) * 1000, 1),
    }
    new = result.pop("engine")
    fig.update(result)
    t0 = time.perf_counter()
    new.contains("allow", queries[0])
    fig["first_check_warmed_ms"] = round((time.perf_counter() - t0) * 1000, 2)

    log("replace on the old engine (today's path), then its first check")
    snap = None
    gc.collect()
    _, wall, cpu = timed(lambda: eng.replace(new_source))
    fig["replace"] = {"s": round(wall, 2), "cpu_s": round(cpu, 2)}
    t0 = time.perf_counter()
    eng.contains("allow", queries[0])
    fig["first_check_after_replace_ms"] = round((time.perf_counter() - t0) * 1000, 2)

    sizes = {n: i.size for n, i in eng.relations().items()}
    same = sizes == {n: i.size for n, i in new.relations().items()}
    same = same and all(new.contains("allow", q) == eng.contains("allow", q) for q in queries)
    fig["new_equals_replaced"] = same
    if not same:
        log("MISMATCH between from_snapshot and replace")
    fig["loadavg_end"] = os.getloadavg()[0]
    print_table(fig)
    print(json.dumps(fig, separators=(",", ":")))
    return 0


def print_table(fig: dict[str, Any]) -> None:
    s, a, d = fig["snapshot"], fig["checks_alone"], fig["checks_during_rebuild"]
    print(
        f"\nrebuild off the owner thread, drive scale={fig['scale']} ({fig['base_facts']:,} "
        f"facts; load avg {fig['loadavg_start']:.1f} → {fig['loadavg_end']:.1f}, GIL switch "
        f"interval {fig['switch_interval_ms']:.0f} ms{', gc.freeze()' if fig['freeze'] else ''})"
    )
    rows = [
        ("snapshot() on the owner thread", f"{s['best_ms']} ms best, {s['median_ms']} median"),
        ("from_snapshot() in the worker", f"{fig['from_snapshot']['s']} s"),
        ("warm(['allow']) in the worker", f"{fig['warm']['s']} s"),
        ("first allow check, warmed engine", f"{fig['first_check_warmed_ms']} ms"),
        ("replace() on the owner (today)", f"{fig['replace']['s']} s"),
        ("first allow check after replace", f"{fig['first_check_after_replace_ms']} ms"),
        (
            "allow checks alone p50/p99/max",
            f"{a['p50_us']} / {a['p99_us']} / {a['max_us']} µs",
        ),
        (
            "  during the rebuild",
            f"{d['p50_us']} / {d['p99_us']} / {d['max_us']} µs ({d['n']:,} checks)",
        ),
        ("  longest gap between answers", f"{a['longest_gap_ms']} → {d['longest_gap_ms']} ms"),
        (
            "  GC collections: longest, total",
            f"{fig['gc_during_rebuild']['longest_ms']} ms, {fig['gc_during_rebuild']['total_ms']} "
            f"ms ({fig['gc_during_rebuild']['collections']})",
        ),
        ("new engine equals the replaced one", str(fig["new_equals_replaced"])),
    ]
    for label, value in rows:
        print(f"{label:38}{value:>40}")


if __name__ == "__main__":
    raise SystemExit(main())
