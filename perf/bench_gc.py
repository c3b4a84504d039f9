"""Cyclic GC pauses with the views in memory, with and without ``heap.settle`` (gc.freeze).

    python3 perf/bench_gc.py [--scale 0.2] [--checks 200000]

Loads the drive workload into an Authorizer, then decides checks while fact changes stream in
(one change batch per 100 checks), recording every collection's duration through
``gc.callbacks``. Prints the longest collection and the p99.99 check latency, first on the
plain heap, then after ``rune.streams.heap.settle()``; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from rune import Authorizer
from rune.streams import heap
from rune.workloads import drive


def run(az: Authorizer, reqs: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    pauses: list[float] = []
    started: list[float] = []

    def timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append((time.perf_counter() - started.pop(), info["generation"]))  # type: ignore[arg-type]

    gc.callbacks.append(timer)
    lat: list[float] = []
    try:
        for i, req in enumerate(reqs):
            if i % 100 == 0:
                e = events[(i // 100) % len(events)]
                az.apply(e)
                az.apply({**e, "op": "retract"})
            t = time.perf_counter()
            az.check(req)
            lat.append(time.perf_counter() - t)
    finally:
        gc.callbacks.remove(timer)
    full = [p for p, g in pauses if g == 2]  # type: ignore[misc]
    longest = max((p for p, _ in pauses), default=0.0)  # type: ignore[misc]
    lat.sort()
    print(
        f"  collections {len(pauses)} (full {len(full)}), longest {longest * 1e3:.1f} ms; "
        f"checks p50 {statistics.median(lat) * 1e6:.0f} us, "
        f"p99.99 {lat[int(len(lat) * 0.9999)] * 1e6:.0f} us, max {lat[-1] * 1e3:.1f} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=0.2)
    p.add_argument("--checks", type=int, default=200_000)
    args = p.parse_args()
    facts = drive.generate(args.scale)
    az = Authorizer(cache_entries=0)
    az.load_bundle(drive.bundle(cedar=False))
    evs = drive.fact_events(facts)
    for i in range(0, len(evs), 5000):
        az.apply_batch(evs[i : i + 5000])
    reqs = drive.check_requests(facts, args.checks, seed=5)
    extra = [
        {"op": "assert", "fact": ["member", {"type": "User", "id": f"gc{i}"}, ev["fact"][2]]}
        for i, ev in enumerate(e for e in evs if e["fact"][0] == "member")
    ][:1000]
    print(f"drive scale {args.scale}: {len(evs):,} base facts, {len(gc.get_objects()):,} tracked")
    run(az, reqs[:2000], extra)  # warm-up: the first checks build lookup indexes
    t = time.perf_counter()
    gc.collect()
    took = (time.perf_counter() - t) * 1e3
    print(f"a full collection (generation 2) of the plain heap: {took:.0f} ms")
    print("checks on the plain heap:")
    run(az, reqs, extra)
    print(f"heap.settle(): {heap.settle() * 1e3:.0f} ms, once (at catch-up / bundle swap)")
    t = time.perf_counter()
    gc.collect()
    print(f"a full collection after settle: {(time.perf_counter() - t) * 1e3:.1f} ms")
    print("checks after settle:")
    run(az, reqs, extra)
    gc.unfreeze()


if __name__ == "__main__":
    main()
