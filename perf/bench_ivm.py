"""Benchmark of the incremental Datalog engine on the "drive" workload (docs/design.md §6).

    python perf/bench_ivm.py --scale 0.1 [--seed 1] [--changes 200]

Prints a table of figures with the docs/design.md §6 targets beside them, then one JSON line with
every figure (the last line of output). Never asserts on timings. See perf/README.md.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import drive

from rune.ivm import Engine

LARGE = 1000
"""Changes whose output exceeds this many tuples are reported separately."""

SMALL = 100
"""Changes whose output is at most this many tuples are pooled (all kinds) for the p99 target."""

TARGETS = {
    "derived_per_s": 300_000,
    "whole_load_s_at_scale_1": 30.0,
    "change_p99_us": 1000.0,
    "small_change_p99_us": 500.0,
    "bytes_per_tuple": 150.0,
    "check_p99_us": 50.0,
    "checks_per_s": 100_000,
}
"""docs/design.md §6 targets (whole load is for scale 1.0)."""

TARGETED_KINDS = ("member_add", "member_remove", "folder_move")
"""Kinds docs/design.md §6 names for the single-change p99 target."""

Facts = dict[str, list[tuple[object, ...]]]


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    """Resident set size now, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def pct(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def sizes(eng: Engine) -> dict[str, dict[str, Any]]:
    """name -> {kind, size} from ``eng.relations()``."""
    out = {}
    for name, info in eng.relations().items():
        size = info.size
        out[name] = {"kind": str(info.kind), "size": None if size is None else int(size)}
    return out


def stored_counts(rel: dict[str, dict[str, Any]]) -> tuple[int, int]:
    """(base tuples, derived tuples) over materialized relations.

    A relation with rules counts as derived (its size includes any base facts it holds)."""
    base = sum(r["size"] or 0 for r in rel.values() if r["kind"] == "base")
    derived = sum(r["size"] or 0 for r in rel.values() if r["kind"] == "derived")
    return base, derived


class GcMonitor:
    """Time spent in the cyclic GC (``gc.callbacks``): collections per generation, total and
    longest pause, and the GC time inside the current measured call (``take``)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total_ns = [0, 0, 0]
        self.longest_ns = 0
        self.inside_ns = 0  # since the last take()
        self._start = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
            return
        dt = time.perf_counter_ns() - self._start
        gen = info["generation"]
        self.count[gen] += 1
        self.total_ns[gen] += dt
        self.inside_ns += dt
        self.longest_ns = max(self.longest_ns, dt)

    def __enter__(self) -> GcMonitor:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def take(self) -> int:
        """GC nanoseconds since the last call."""
        dt, self.inside_ns = self.inside_ns, 0
        return dt

    def summary(self) -> dict[str, Any]:
        return {
            "collections": list(self.count),
            "ms_by_generation": [round(t / 1e6, 2) for t in self.total_ns],
            "total_ms": round(sum(self.total_ns) / 1e6, 2),
            "longest_ms": round(self.longest_ns / 1e6, 2),
        }


def timed_strata(strata: list[dict[str, Any]]) -> Any:
    """Wrap ``Materialization._materialize`` to record, per stratum computed in bulk, its
    relations, wall and thread CPU seconds and the rows it stored (a benchmark probe: the
    engine itself keeps no timings)."""
    from rune.ivm import evaluate

    original = evaluate.Materialization._materialize

    def probe(self: Any, sp: Any, max_iterations: int | None) -> None:
        c0, t0 = time.thread_time(), time.perf_counter()
        original(self, sp, max_iterations)
        dt, dc = time.perf_counter() - t0, time.thread_time() - c0
        names = [r for r in sp.stratum.relations]
        rows = sum(len(self.relations[r]) for r in names)
        strata.append({"relations": names, "s": dt, "cpu_s": dc, "rows": rows})

    evaluate.Materialization._materialize = probe  # type: ignore[method-assign]
    return original


def load(
    facts: Facts,
    strata: list[dict[str, Any]] | None = None,
    monitor: GcMonitor | None = None,
    read: bool = True,
) -> tuple[Engine, float, float, int, float, float]:
    """Fresh engine + one bulk update (``strata`` receives per-stratum timings of the update).

    Returns (engine, compile s, update s, output size, process CPU s of both, s to read the
    output: the engine may decode ``Change.added``/``removed`` lazily, on first access)."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    eng = Engine(drive.drive_program())
    t1 = time.perf_counter()
    original = timed_strata(strata) if strata is not None else None
    try:
        out = eng.update(insert=facts)
    finally:
        if original is not None:
            from rune.ivm import evaluate

            evaluate.Materialization._materialize = original  # type: ignore[method-assign]
    t2 = time.perf_counter()
    cpu = time.process_time() - c0
    if monitor is not None:
        monitor.__enter__()
    if read:
        n = sum(len(c.added) + len(c.removed) for c in out.values())
    else:
        n = sum(map(len, out.values()))  # sizes only: nothing decoded
    t3 = time.perf_counter()
    del out
    return eng, t1 - t0, t2 - t1, n, cpu, t3 - t2


def engine_stats(eng: Engine) -> tuple[dict[str, Any], int | None]:
    """``eng.stats()`` and the approximate bytes it reports (None when it reports none)."""
    try:
        stats = dict(eng.stats())
    except Exception as e:  # the engine may not report stats
        return {"error": repr(e)}, None
    for key in ("bytes", "approx_bytes", "approximate_bytes", "total_bytes"):
        if isinstance(stats.get(key), int):
            return stats, stats[key]
    return stats, None


def memory_snapshot(eng: Engine, rss0: int, stored: int) -> dict[str, Any]:
    """RSS growth since ``rss0`` and the engine's own estimate, per stored tuple."""
    gc.collect()
    rss = rss_bytes()
    stats, engine_bytes = engine_stats(eng)
    tuples = stats.get("tuples") if isinstance(stats.get("tuples"), int) else stored
    return {
        "rss_delta_mb": round((rss - rss0) / 2**20, 1),
        "rss_bytes_per_tuple": round((rss - rss0) / tuples, 1) if tuples else None,
        "engine_bytes": engine_bytes,
        "engine_bytes_per_tuple": round(engine_bytes / tuples, 1)
        if engine_bytes and tuples
        else None,
        "engine_stats": stats,
    }


def engine_source_hash() -> str:
    """Short hash of rune/ivm/*.py, to tell which engine version produced the figures."""
    h = hashlib.sha256()
    for path in sorted((Path(__file__).resolve().parent.parent / "rune" / "ivm").glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def verify(eng: Engine, facts: Facts, label: str) -> dict[str, Any]:
    """Compare the engine's materialized relations with the plain-Python reference."""
    ref = drive.reference(facts)
    bad = {}
    for name, want in ref.items():
        got = eng.query(name)
        if got != want:
            bad[name] = {
                "missing": len(want - got),
                "extra": len(got - want),
                "example_missing": [str(x) for x in list(want - got)[:2]],
                "example_extra": [str(x) for x in list(got - want)[:2]],
            }
    if bad:
        log(f"VERIFY {label}: MISMATCH {bad}")
    else:
        log(f"verify {label}: materialized relations equal the reference")
    return {"ok": not bad, "mismatch": bad}


def summarize(
    lat_ns: list[int], outs: list[int], cpu_ns: list[int], read_ns: list[int]
) -> dict[str, Any]:
    lat = sorted(x / 1000 for x in lat_ns)
    with_read = sorted((x + y) / 1000 for x, y in zip(lat_ns, read_ns, strict=True))
    cpu = sorted(x / 1000 for x in cpu_ns)
    o = sorted(outs)
    total_out = sum(outs)
    return {
        "n": len(lat),
        "p50_us": round(pct(lat, 0.5), 1),
        "p99_us": round(pct(lat, 0.99), 1),
        "max_us": round(lat[-1], 1) if lat else 0.0,
        "mean_us": round(statistics.fmean(lat), 1) if lat else 0.0,
        "cpu_p50_us": round(pct(cpu, 0.5), 1),
        "cpu_p99_us": round(pct(cpu, 0.99), 1),
        "read_p50_us": round(pct(with_read, 0.5), 1),
        "read_p99_us": round(pct(with_read, 0.99), 1),
        "out_median": statistics.median(o) if o else 0,
        "out_max": o[-1] if o else 0,
        "us_per_out": round(sum(lat) / total_out, 2) if total_out else None,
    }


def run_changes(
    eng: Engine, stream: list[drive.Change], large: int, small: int = SMALL
) -> dict[str, Any]:
    """Apply the stream one batch at a time; wall (and thread CPU) time of each update, and
    the extra time to read its output (``Change`` sets may be decoded lazily).

    Also pools the changes of every kind whose output is at most ``small`` tuples (the p99
    target's population: p50/p99/p99.9, wall and CPU) and the cyclic GC's time inside the
    updates (``gc.callbacks``)."""
    per: dict[str, list[tuple[int, int, int, int]]] = {}
    pooled: list[tuple[int, int, int]] = []  # (wall, cpu, gc) of small-output changes
    wall, cpu = time.perf_counter_ns, time.thread_time_ns
    with GcMonitor() as mon:
        for ch in stream:
            mon.take()
            c0 = cpu()
            t0 = wall()
            out = eng.update(insert=ch.insert, delete=ch.delete)
            dt = wall() - t0
            dc = cpu() - c0
            dg = mon.take()
            t1 = wall()
            n = sum(len(c.added) + len(c.removed) for c in out.values())
            dr = wall() - t1
            per.setdefault(ch.kind, []).append((dt, n, dc, dr))
            if n <= small:
                pooled.append((dt, dc, dg))
    result: dict[str, Any] = {}
    all_lat: list[int] = []
    for kind in drive.KINDS:
        if kind not in per:
            continue
        rows = per[kind]
        all_lat += [r[0] for r in rows]
        parts = {
            "all": rows,
            "small": [r for r in rows if r[1] <= large],
            "large": [r for r in rows if r[1] > large],
        }
        result[kind] = {
            name: summarize(
                [r[0] for r in rs], [r[1] for r in rs], [r[2] for r in rs], [r[3] for r in rs]
            )
            for name, rs in parts.items()
        }
    result["_median_all_us"] = statistics.median(all_lat) / 1000 if all_lat else 0.0
    lat = sorted(p[0] / 1000 for p in pooled)
    cpus = sorted(p[1] / 1000 for p in pooled)
    result["_small"] = {
        "threshold": small,
        "n": len(lat),
        "p50_us": round(pct(lat, 0.5), 1),
        "p99_us": round(pct(lat, 0.99), 1),
        "p999_us": round(pct(lat, 0.999), 1),
        "max_us": round(lat[-1], 1) if lat else 0.0,
        "cpu_p50_us": round(pct(cpus, 0.5), 1),
        "cpu_p99_us": round(pct(cpus, 0.99), 1),
        "cpu_p999_us": round(pct(cpus, 0.999), 1),
        "with_gc": sum(1 for p in pooled if p[2]),
        "gc_ms": round(sum(p[2] for p in pooled) / 1e6, 2),
    }
    result["_gc"] = mon.summary()
    return result


def run_checks(eng: Engine, queries: list[tuple[Any, Any, Any]]) -> dict[str, Any]:
    contains = eng.contains
    t0 = time.perf_counter_ns()
    contains("allow", queries[0])  # the first lookup may build the indexes it needs
    first_us = (time.perf_counter_ns() - t0) / 1000
    for q in queries[:200]:  # warm up
        contains("allow", q)
    lat = []
    allowed = 0
    wall = time.perf_counter_ns
    for q in queries:
        t0 = wall()
        ok = contains("allow", q)
        lat.append(wall() - t0)
        allowed += ok
    c0 = time.thread_time()
    t0 = time.perf_counter()
    for q in queries:
        contains("allow", q)
    total = time.perf_counter() - t0
    total_cpu = time.thread_time() - c0
    lat_us = sorted(x / 1000 for x in lat)
    return {
        "checks_per_cpu_s": round(len(queries) / total_cpu) if total_cpu else None,
        "first_check_us": round(first_us, 1),
        "n": len(queries),
        "allowed": allowed,
        "p50_us": round(pct(lat_us, 0.5), 2),
        "p99_us": round(pct(lat_us, 0.99), 2),
        "max_us": round(lat_us[-1], 1),
        "checks_per_s": round(len(queries) / total) if total else None,
    }


def fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--scale", type=float, default=0.1, help="1.0 = docs/design.md §6 drive (default 0.1)"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--changes", type=int, default=500, help="single changes per kind")
    ap.add_argument("--checks", type=int, default=20_000, help="allow checks to time")
    ap.add_argument("--large", type=int, default=LARGE, help="output size reported apart")
    ap.add_argument(
        "--small",
        type=int,
        default=SMALL,
        help="output size up to which changes of all kinds are pooled (default 100)",
    )
    ap.add_argument(
        "--verify",
        choices=("auto", "yes", "no"),
        default="auto",
        help="compare with a plain-Python reference (auto: when scale <= 0.1)",
    )
    ap.add_argument("--no-recompute", action="store_true", help="skip recompute from scratch")
    ap.add_argument(
        "--no-read",
        action="store_true",
        help="do not decode the bulk load's returned changes (an embedding that ignores them: "
        "the decoded rows, millions of tracked tuples, otherwise dominate the GC figures)",
    )
    ap.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also measure Python heap growth of the load exactly (slow: ~2x load time)",
    )
    ap.add_argument(
        "--gc",
        choices=("default", "freeze", "off"),
        default="default",
        help="cyclic GC during the change/check phases (freeze = gc.freeze() after load)",
    )
    ap.add_argument(
        "--warm",
        type=int,
        default=0,
        metavar="N",
        help="untimed allow checks before the change stream (default 0): the indexes checks "
        "build exist while changes run, as in a service where both interleave",
    )
    args = ap.parse_args(argv)
    do_verify = args.verify == "yes" or (args.verify == "auto" and args.scale <= 0.1)

    fig: dict[str, Any] = {
        "bench": "ivm/drive",
        "scale": args.scale,
        "seed": args.seed,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "engine_src": engine_source_hash(),
        "loadavg_start": os.getloadavg()[0],
        "targets": TARGETS,
    }

    log(f"generating drive scale={args.scale} seed={args.seed}")
    t0 = time.perf_counter()
    facts, stream, final = drive.changes(args.scale, args.seed, args.changes)
    queries = drive.check_queries(final, args.checks, args.seed)
    fig["generate_s"] = round(time.perf_counter() - t0, 2)
    base_facts = sum(len(v) for v in facts.values())
    fig["base_facts"] = base_facts
    fig["base_by_relation"] = {k: len(v) for k, v in facts.items()}

    # ---- bulk load ------------------------------------------------------------------------
    gc.collect()
    rss0 = rss_bytes()
    peak0 = peak_rss_bytes()
    if args.tracemalloc:
        tracemalloc.start()
    log("bulk load")
    strata: list[dict[str, Any]] = []
    after_load = GcMonitor()  # every collection from the load's return to the last change
    eng, compile_s, update_s, out_n, load_cpu, decode_s = load(
        facts, strata, after_load, not args.no_read
    )
    # no gc.collect() here: as in an embedding, whatever the load left to the cyclic GC is
    # paid during the changes that follow (reported under "GC during changes")
    heap = None
    if args.tracemalloc:
        heap, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    rss1 = rss_bytes()
    rel = sizes(eng)
    stored_base, derived = stored_counts(rel)
    if derived == 0:  # relations() without kinds: fall back on the bulk output
        derived = out_n
    stored = stored_base + derived
    whole = compile_s + update_s
    fig["relations"] = rel
    fig["derived_tuples"] = derived
    fig["stored_tuples"] = stored
    fig["bulk"] = {
        "compile_s": round(compile_s, 4),
        "materialize_s": round(update_s, 3),
        "derived_per_s": round(derived / update_s) if update_s else None,
        "whole_load_s": round(whole, 3),
        "whole_load_cpu_s": round(load_cpu, 3),
        "whole_tuples_per_s": round((base_facts + derived) / whole) if whole else None,
        "output_tuples": out_n,
        "read_output_s": round(decode_s, 3),
        "strata": [
            {
                "relations": st["relations"],
                "s": round(st["s"], 4),
                "cpu_s": round(st["cpu_s"], 4),
                "rows": st["rows"],
                "rows_per_s": round(st["rows"] / st["s"]) if st["s"] else None,
            }
            for st in strata
        ],
    }

    log(f"loaded: {derived:,} derived in {update_s:.2f}s")

    stats, engine_bytes = engine_stats(eng)
    fig["memory"] = {
        "rss_before_mb": round(rss0 / 2**20, 1),
        "rss_delta_mb": round((rss1 - rss0) / 2**20, 1),
        "rss_bytes_per_tuple": round((rss1 - rss0) / stored, 1) if stored else None,
        "peak_rss_delta_mb": round((peak_rss_bytes() - max(peak0, rss0)) / 2**20, 1),
        "tracemalloc_bytes_per_tuple": round(heap / stored, 1) if heap and stored else None,
        "engine_bytes": engine_bytes,
        "engine_bytes_per_tuple": round(engine_bytes / stored, 1)
        if engine_bytes and stored
        else None,
    }
    fig["engine_stats"] = stats

    if do_verify:
        fig["verify_initial"] = verify(eng, facts, "after bulk load")

    if args.gc == "freeze":
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    fig["gc"] = args.gc
    fig["large_threshold"] = args.large
    fig["warm_checks"] = args.warm
    if args.warm:
        log(f"{args.warm} untimed allow checks before the changes")
        for q in queries[: args.warm]:
            eng.contains("allow", q)

    # ---- single changes -------------------------------------------------------------------
    log(f"{len(stream)} single changes")
    t0 = time.perf_counter()
    ch = run_changes(eng, stream, args.large)
    fig["changes_wall_s"] = round(time.perf_counter() - t0, 2)
    after_load.__exit__()
    fig["gc_after_load"] = after_load.summary()
    median_change_us = ch.pop("_median_all_us")
    fig["small_changes"] = ch.pop("_small")
    fig["gc_during_changes"] = ch.pop("_gc")
    fig["changes"] = ch
    fig["change_median_all_us"] = round(median_change_us, 1)
    fig["memory"]["after_changes"] = memory_snapshot(eng, rss0, stored)
    if do_verify:
        fig["verify_after_changes"] = verify(eng, final, "after the change stream")

    # ---- checks ---------------------------------------------------------------------------
    log(f"{len(queries)} allow checks")
    fig["check"] = run_checks(eng, queries)
    # updates and on-demand lookups may have built more indexes: memory in steady state
    fig["memory"]["after_checks"] = memory_snapshot(eng, rss0, stored)
    if do_verify:
        ref = drive.reference(final)
        oracle = drive.allow_oracle(final, ref)
        wrong = [q for q in queries[:5000] if eng.contains("allow", q) != oracle(*q)]
        fig["verify_checks"] = {"checked": min(5000, len(queries)), "wrong": len(wrong)}
        if wrong:
            log(f"VERIFY checks: {len(wrong)} wrong, e.g. {[str(x) for x in wrong[0]]}")
        else:
            log("verify checks: allow agrees with the reference")
    gc.enable()

    # ---- recompute from scratch -----------------------------------------------------------
    if not args.no_recompute:
        log("recompute from scratch on the final facts")
        rel_inc = sizes(eng)
        eng2, c2, u2, _, re_cpu, _ = load(final)
        re_s = c2 + u2
        same = sizes(eng2) == rel_inc
        fig["recompute"] = {
            "seconds": round(re_s, 3),
            "cpu_seconds": round(re_cpu, 3),
            "ratio_to_median_update": round(re_s / (median_change_us / 1e6))
            if median_change_us
            else None,
            "relation_sizes_equal": same,
        }
        if not same:
            log("recompute: relation sizes differ from the incrementally maintained ones")
        del eng2

    # what one full collection costs with the engine in memory (the benchmark's own facts,
    # change stream and final facts included: about 2.5M tracked objects at scale 1.0)
    gc.collect()
    t0 = time.perf_counter()
    gc.collect()
    fig["gc_heap"] = {
        "full_collection_s": round(time.perf_counter() - t0, 3),
        "tracked_objects": len(gc.get_objects()),
    }
    fig["loadavg_end"] = os.getloadavg()[0]
    fig["peak_rss_mb"] = round(peak_rss_bytes() / 2**20)
    print_table(fig)
    print(json.dumps(fig, default=str, separators=(",", ":")))
    return 0


def print_table(fig: dict[str, Any]) -> None:
    s = fig["scale"]
    b = fig["bulk"]
    m = fig["memory"]
    rows: list[tuple[str, str, str]] = [
        ("base facts", f"{fig['base_facts']:,}", "~1.2M at scale 1"),
        ("derived tuples (materialized)", f"{fig['derived_tuples']:,}", ""),
        ("compile (Engine(program))", f"{b['compile_s'] * 1000:.1f} ms", ""),
        ("bulk materialization", f"{b['materialize_s']:.2f} s", ""),
        ("  derived tuples/s", fmt_rate(b["derived_per_s"]), "≥ 300,000"),
        (
            "whole load (process CPU)",
            f"{b['whole_load_s']:.2f} s ({b['whole_load_cpu_s']:.2f} s)",
            f"≤ 30 s at scale 1 (≈{30 * s:.3g} s pro rata)",
        ),
        ("  (base+derived) tuples/s", fmt_rate(b["whole_tuples_per_s"]), ""),
        ("  then reading its output", f"{b['read_output_s']:.2f} s", ""),
        ("RSS growth / stored tuple", f"{m['rss_bytes_per_tuple']} B", "≤ 150 B"),
    ]
    if m["engine_bytes_per_tuple"] is not None:
        rows.append(("engine stats bytes / stored tuple", f"{m['engine_bytes_per_tuple']} B", ""))
    if m["tracemalloc_bytes_per_tuple"] is not None:
        rows.append(("heap growth / tuple", f"{m['tracemalloc_bytes_per_tuple']} B", "≤ 150 B"))
    rows.append(("peak RSS growth during load", f"{m['peak_rss_delta_mb']} MB", ""))
    for key, label in (("after_changes", "after changes"), ("after_checks", "after checks")):
        if key in m:
            a = m[key]
            rows.append((f"{label}: RSS / tuple", f"{a['rss_bytes_per_tuple']} B", "≤ 150 B"))
            if a["engine_bytes_per_tuple"] is not None:
                per = a["engine_bytes_per_tuple"]
                rows.append((f"{label}: engine bytes / tuple", f"{per} B", ""))
    sc = fig["small_changes"]
    g = fig["gc_during_changes"]
    rows += [
        (
            f"changes with output ≤ {sc['threshold']}: n",
            f"{sc['n']:,}",
            "",
        ),
        (
            "  p50 / p99 / p99.9 (wall)",
            f"{sc['p50_us']:.0f} / {sc['p99_us']:.0f} / {sc['p999_us']:.0f} µs",
            "p99 ≤ 500 µs",
        ),
        (
            "  p50 / p99 / p99.9 (thread CPU)",
            f"{sc['cpu_p50_us']:.0f} / {sc['cpu_p99_us']:.0f} / {sc['cpu_p999_us']:.0f} µs",
            "",
        ),
        ("  of them with a GC pass inside", f"{sc['with_gc']} ({sc['gc_ms']} ms)", ""),
        (
            "GC during changes: collections, ms",
            f"{'/'.join(map(str, g['collections']))}, {g['total_ms']} ms "
            f"(longest {g['longest_ms']})",
            "",
        ),
        (
            "GC from the load to the last change",
            f"{'/'.join(map(str, fig['gc_after_load']['collections']))}, "
            f"{fig['gc_after_load']['total_ms']} ms "
            f"(longest {fig['gc_after_load']['longest_ms']})",
            "",
        ),
        (
            "full collection at the end (tracked objects)",
            f"{fig['gc_heap']['full_collection_s'] * 1000:.0f} ms "
            f"({fig['gc_heap']['tracked_objects']:,})",
            "",
        ),
    ]
    c = fig["check"]
    rows += [
        ("allow check p50 / p99", f"{c['p50_us']} / {c['p99_us']} µs", "p99 ≤ 50 µs"),
        (
            "  first check " + ("(after --warm)" if fig.get("warm_checks") else "(builds indexes)"),
            f"{c['first_check_us'] / 1000:.1f} ms",
            "",
        ),
        ("allow checks/s (one core)", fmt_rate(c["checks_per_s"]), "≥ 100,000"),
        ("  checks per CPU second", fmt_rate(c["checks_per_cpu_s"]), ""),
        ("  checks allowed", f"{c['allowed']:,} of {c['n']:,}", ""),
    ]
    if "recompute" in fig:
        r = fig["recompute"]
        rows += [
            (
                "recompute from scratch (CPU)",
                f"{r['seconds']:.2f} s ({r['cpu_seconds']:.2f} s)",
                "",
            ),
            ("  ÷ median single update", fmt_rate(r["ratio_to_median_update"]), ""),
        ]
    w = max(len(r[0]) for r in rows)
    v = max(len(r[1]) for r in rows)
    print(
        f"\ndrive scale={s} seed={fig['seed']}  (python {fig['python']}, {fig['cpus']} cpus, "
        f"load avg {fig['loadavg_start']:.1f} → {fig['loadavg_end']:.1f}, "
        f"engine src {fig['engine_src']}, peak RSS {fig['peak_rss_mb']} MB"
        + (f", {fig['warm_checks']} checks before the changes" if fig.get("warm_checks") else "")
        + ")"
    )
    print(f"{'figure':<{w}}  {'value':>{v}}  target (docs/design.md §6)")
    for name, val, tgt in rows:
        print(f"{name:<{w}}  {val:>{v}}  {tgt}")

    print("\nbulk load per stratum (wall s, thread CPU s, rows stored, rows/s)")
    for st in fig["bulk"]["strata"]:
        if st["s"] >= 0.001:
            print(
                f"  {','.join(st['relations']):<32}{st['s']:>8.3f}{st['cpu_s']:>8.3f}"
                f"{st['rows']:>11,}{fmt_rate(st['rows_per_s']):>12}"
            )
    print(
        f"\nsingle changes (µs; 'small' = output ≤ {fig['large_threshold']} tuples, "
        "target p99 ≤ 1000 µs "
        f"for {', '.join(TARGETED_KINDS)})"
    )
    hdr = (
        f"{'kind':<16}{'n':>5}{'p50':>9}{'p99':>9}{'max':>10}{'out med':>9}{'out max':>9}"
        f"{'µs/out':>8} | {'small n':>7}{'p50':>9}{'p99':>9}{'max':>10}{'cpu p99':>9}"
        f"{'+read':>8}"
        f" | {'large n':>7}{'p50':>10}{'out med':>9}{'µs/out':>8}"
    )
    print(hdr)
    for kind, d in fig["changes"].items():
        a, sm, lg = d["all"], d["small"], d["large"]

        def upo(x: dict[str, Any]) -> str:
            return "-" if x["us_per_out"] is None else f"{x['us_per_out']:.1f}"

        print(
            f"{kind:<16}{a['n']:>5}{a['p50_us']:>9.0f}{a['p99_us']:>9.0f}{a['max_us']:>10.0f}"
            f"{a['out_median']:>9.0f}{a['out_max']:>9}{upo(a):>8} | "
            f"{sm['n']:>7}{sm['p50_us']:>9.0f}{sm['p99_us']:>9.0f}{sm['max_us']:>10.0f}"
            f"{sm['cpu_p99_us']:>9.0f}{sm['read_p99_us']:>8.0f} | "
            f"{lg['n']:>7}{lg['p50_us']:>10.0f}{lg['out_median']:>9.0f}{upo(lg):>8}"
        )
    for key in ("verify_initial", "verify_after_changes", "verify_checks"):
        if key in fig:
            print(f"{key}: {fig[key]}")
    print()


if __name__ == "__main__":
    raise SystemExit(main())
