"""Where the slowest single changes of the drive workload spend their time.

    python3 perf/tail_ivm.py [--scale 0.1] [--changes 500] [--small 100] [--engine DIR]

Loads the drive workload (no collection afterwards, as an embedding would), applies the
change stream and, for the slowest 1 % of the changes whose output is at most ``--small``
tuples, prints where the time went: the cyclic GC (``gc.callbacks``), DRed's over-deletion,
its re-derivation checks, index maintenance (``Relation.insert``/``insert_new``/``remove``),
semi-naive insertion, counting strata, and the rest of the update (encoding, reference
counts, deltas, the returned changes). Each part is exclusive of the others. Probes wrap
engine methods (a few hundred ns each), so the figures are indicative shares, not exact
latencies. Changes are ranked, and parts timed, by thread CPU time (wall time beside).
``--engine DIR`` imports ``rune`` from another checkout (see ``bench_bulk.py``). Prints;
never asserts.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PARTS = ("gc", "overdelete", "rederive", "index", "propagate", "count", "other")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--changes", type=int, default=500, help="single changes per kind")
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--engine", type=Path, default=HERE.parent, help="directory holding rune/")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(args.engine.resolve()))
    import drive

    from rune.ivm import Engine, evaluate, store

    facts, stream, _ = drive.changes(args.scale, args.seed, args.changes)
    eng = Engine(drive.drive_program())
    eng.update(insert=facts)
    del facts

    acc: Counter[str] = Counter()  # exclusive nanoseconds per part
    children = [0]  # stack: time spent in probed callees of each open probe
    clock = time.thread_time_ns  # CPU time: other processes taking the core do not count

    def timed(part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            children.append(0)
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                dt = clock() - t0
                acc[part] += dt - children.pop()
                children[-1] += dt

        return wrapper

    mat_cls, rel_cls = evaluate.Materialization, store.Relation
    mat_cls._dred = timed("dred", mat_cls._dred)  # type: ignore[method-assign]
    mat_cls._propagate = timed("propagate", mat_cls._propagate)  # type: ignore[method-assign]
    mat_cls._count = timed("count", mat_cls._count)  # type: ignore[method-assign]
    for name in ("insert", "insert_new", "remove"):
        setattr(rel_cls, name, timed("index", getattr(rel_cls, name)))
    for sp in eng._mat.strata:
        for r, fn in list(getattr(sp, "checks", {}).items()):
            sp.checks[r] = timed("rederive", fn)

    start = [0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            start[0] = clock()
        else:
            dt = clock() - start[0]
            acc["gc"] += dt
            children[-1] += dt

    gc.callbacks.append(on_gc)
    rows: list[tuple[int, int, int, str, Counter[str]]] = []
    for ch in stream:
        acc.clear()
        t0, c0 = time.perf_counter_ns(), clock()
        out = eng.update(insert=ch.insert, delete=ch.delete)
        dt, dc = time.perf_counter_ns() - t0, clock() - c0
        n = sum(len(c) for c in out.values())
        rows.append((dt, dc, n, ch.kind, Counter(acc)))
    gc.callbacks.remove(on_gc)

    # ranked by thread CPU time: on a shared machine the wall time's tail is other processes
    small = sorted((r for r in rows if r[2] <= args.small), key=lambda r: r[1])
    lat = [r[1] / 1000 for r in small]

    def pct(q: float) -> float:
        return lat[max(0, math.ceil(q * len(lat)) - 1)]

    k = max(1, len(small) // 100)
    tail = small[-k:]
    print(
        f"drive scale={args.scale}: {len(small)} changes with output <= {args.small}; "
        f"CPU p50 {pct(0.5):.0f}, p99 {pct(0.99):.0f}, p99.9 {pct(0.999):.0f} us "
        f"(load avg {os.getloadavg()[0]:.1f}); the slowest {k}:"
    )
    total: Counter[str] = Counter()
    for dt, dc, n, kind, parts in tail:
        split = {p: parts[p] for p in PARTS if p not in ("overdelete", "other")}
        split["overdelete"] = parts["dred"]  # DRed minus its probed callees
        split["other"] = max(0, dc - sum(split.values()))
        total.update(split)
        shown = "  ".join(f"{p} {split[p] / 1000:.0f}" for p in PARTS if split[p] >= 5000)
        print(f"  cpu {dc / 1000:6.0f} us (wall {dt / 1000:6.0f}) out {n:3d} {kind:16s} {shown}")
    whole = sum(total.values()) or 1
    print(
        "share of the slowest 1 %: "
        + ", ".join(f"{p} {100 * total[p] / whole:.0f} %" for p in PARTS)
        + f"; kinds {dict(Counter(r[3] for r in tail))}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
