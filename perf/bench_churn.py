"""Memory under churn of unique values: assert then retract many facts, see what stays.

    python perf/bench_churn.py [--facts 1000000] [--batch 1000] [--single 10000] [--scale 0.01]

On top of the drive workload at ``--scale`` (the live base), ``--facts`` facts whose values are
all new are asserted in batches of ``--batch`` rows per update (as a service applies a topic),
then retracted in the same batches; then ``--single`` of them are asserted and retracted one
fact per update. Each churn fact is ``doc_folder(Doc::"churn-d<i>", <existing folder>)`` (three
in four: no derivation) or ``member(User::"churn-u<i>", <existing group>)`` (its ``in_group``
closure is derived). Facts are regenerated from their index for retraction, so the benchmark
holds none of them itself.

Prints RSS (from /proc/self/statm, after ``gc.collect()``; then again after glibc's
``malloc_trim(0)``, which hands the free pages inside the C heap back to the system: freed
dicts, sets and lists above 512 bytes live there, and ``free()`` only returns the heap's
top) and ``eng.stats()`` at the start,
with every churn fact asserted, after retracting them, and after the one-by-one phase, the
latencies of the updates, then one JSON line with every figure (the last line of output).
RSS should return near its start: values no stored tuple references are reclaimed. Never
asserts on timings; it does check that the views end equal to those of the base facts.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import drive

from rune.ivm import Engine, EntityRef

Facts = dict[str, list[tuple[object, ...]]]


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def rss_mb() -> float:
    """Resident set size now (MB), from /proc/self/statm, after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or ``None`` on another C library."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


MALLOC_TRIM = _malloc_trim()


def pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def churn_batch(
    start: int, n: int, seed: int, groups: list[object], folders: list[object]
) -> Facts:
    """Churn facts ``start .. start+n-1`` (the same ones every time for the same arguments)."""
    rng = random.Random(seed * 1_000_003 + start)
    out: Facts = {"doc_folder": [], "member": []}
    for i in range(start, start + n):
        if i % 4 == 3:
            out["member"].append((EntityRef("User", f"churn-u{i}"), rng.choice(groups)))
        else:
            out["doc_folder"].append((EntityRef("Doc", f"churn-d{i}"), rng.choice(folders)))
    return {k: v for k, v in out.items() if v}


def point(eng: Engine, label: str) -> dict[str, Any]:
    stats = eng.stats()
    fig: dict[str, Any] = {"rss_mb": round(rss_mb(), 1)}
    if MALLOC_TRIM is not None:  # hand the C heap's free pages back, then measure again
        MALLOC_TRIM(0)
        fig["rss_trimmed_mb"] = round(rss_mb(), 1)
    fig.update(stats)
    log(
        f"{label}: RSS {fig['rss_mb']} MB ({fig.get('rss_trimmed_mb')} MB after malloc_trim), "
        f"{stats['tuples']:,} tuples, {stats['dictionary_values']:,} dictionary values"
    )
    return fig


def timed(lat: list[float]) -> dict[str, float]:
    s = sorted(lat)
    return {
        "n": len(s),
        "p50_us": round(pct(s, 0.5) * 1e6, 1),
        "p99_us": round(pct(s, 0.99) * 1e6, 1),
        "max_us": round(s[-1] * 1e6, 1) if s else 0.0,
        "total_s": round(sum(s), 2),
    }


def run(
    eng: Engine, starts: list[int], n: int, verb: str, args: argparse.Namespace, pool: Any
) -> list[float]:
    lat = []
    clock = time.perf_counter
    for start in starts:
        facts = churn_batch(start, n, args.seed, *pool)
        t0 = clock()
        if verb == "insert":
            eng.update(insert=facts)
        else:
            eng.update(delete=facts)
        lat.append(clock() - t0)
    return lat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--facts", type=int, default=1_000_000, help="churn facts, batched")
    ap.add_argument("--batch", type=int, default=1000, help="rows per update when batched")
    ap.add_argument("--single", type=int, default=10_000, help="churn facts, one per update")
    ap.add_argument("--scale", type=float, default=0.01, help="drive workload as the live base")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    fig: dict[str, Any] = {
        "bench": "ivm/churn",
        "facts": args.facts,
        "batch": args.batch,
        "single": args.single,
        "scale": args.scale,
        "seed": args.seed,
        "loadavg_start": os.getloadavg()[0],
    }
    base = drive.generate(args.scale, args.seed)
    groups = sorted({g for _, g in base["member"]} | {g for g, _ in base["subgroup"]})
    folders = sorted({f for _, f in base["doc_folder"]})
    pool = (groups, folders)
    eng = Engine(drive.drive_program())
    eng.update(insert=base)
    expected = {name: info.size for name, info in eng.relations().items()}
    del base
    fig["start"] = point(eng, "start")

    starts = list(range(0, args.facts, args.batch))
    log(f"asserting {args.facts:,} facts in {len(starts):,} updates")
    fig["assert_batches"] = timed(run(eng, starts, args.batch, "insert", args, pool))
    fig["asserted"] = point(eng, "asserted")
    log("retracting them")
    fig["retract_batches"] = timed(run(eng, starts, args.batch, "delete", args, pool))
    fig["retracted"] = point(eng, "retracted")

    singles = list(range(args.facts, args.facts + args.single))
    log(f"asserting then retracting {args.single:,} facts one per update")
    fig["assert_single"] = timed(run(eng, singles, 1, "insert", args, pool))
    fig["retract_single"] = timed(run(eng, singles, 1, "delete", args, pool))
    fig["end"] = point(eng, "end")

    got = {name: info.size for name, info in eng.relations().items()}
    fig["views_equal_base"] = got == expected
    if got != expected:
        log(f"MISMATCH: {got} != {expected}")
    fig["loadavg_end"] = os.getloadavg()[0]
    print_table(fig)
    print(json.dumps(fig, separators=(",", ":")))
    return 0


def print_table(fig: dict[str, Any]) -> None:
    print(
        f"\nchurn of {fig['facts']:,} unique facts in batches of {fig['batch']:,}, then "
        f"{fig['single']:,} one by one, over drive scale={fig['scale']}  "
        f"(load avg {fig['loadavg_start']:.1f} → {fig['loadavg_end']:.1f})"
    )
    points = ("start", "asserted", "retracted", "end")
    print(f"{'':24}" + "".join(f"{p:>14}" for p in points))
    for key, label in (
        ("rss_mb", "RSS (MB)"),
        ("rss_trimmed_mb", "  after malloc_trim(0)"),
        ("tuples", "stored tuples"),
        ("dictionary_values", "dictionary values"),
        ("dictionary_dead", "  dead, not reclaimed"),
        ("dictionary_ids", "dictionary id slots"),
        ("dictionary_free", "  free"),
        ("bytes", "engine bytes"),
    ):
        cells = [fig[p].get(key) for p in points]
        if all(c is None for c in cells):
            continue
        print(f"{label:24}" + "".join(f"{'-' if c is None else f'{c:,}':>14}" for c in cells))
    print(f"\n{'updates':24}{'n':>8}{'p50 µs':>10}{'p99 µs':>10}{'max µs':>10}{'total s':>10}")
    for key in ("assert_batches", "retract_batches", "assert_single", "retract_single"):
        t = fig[key]
        print(
            f"{key:24}{t['n']:>8,}{t['p50_us']:>10,.0f}{t['p99_us']:>10,.0f}"
            f"{t['max_us']:>10,.0f}{t['total_s']:>10.2f}"
        )
    print(f"views equal those of the base facts at the end: {fig['views_equal_base']}")


if __name__ == "__main__":
    raise SystemExit(main())
