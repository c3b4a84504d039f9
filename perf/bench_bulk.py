"""Bulk load of the drive workload alone: wall and process CPU time, derived tuples/s.

    python3 perf/bench_bulk.py [--scale 1.0] [--seed 1] [--repeat 1] [--engine DIR]

``--engine DIR`` imports ``rune`` from DIR instead of this checkout (an export of another
commit, ``git archive <commit> rune | tar -x -C DIR``), for interleaved before/after runs:
A, B, A, B. Prints one line per run (with the load average) and never asserts.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--engine", type=Path, default=HERE.parent, help="directory holding rune/")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(args.engine.resolve()))
    import drive

    from rune.ivm import Engine

    facts = drive.generate(args.scale, args.seed)
    for _ in range(args.repeat):
        gc.collect()
        eng = Engine(drive.drive_program())
        gc_ns = [0, 0]

        def on_gc(phase: str, info: dict[str, object], acc: list[int] = gc_ns) -> None:
            if phase == "start":
                acc[1] = time.perf_counter_ns()
            else:
                acc[0] += time.perf_counter_ns() - acc[1]

        gc.callbacks.append(on_gc)
        c0, t0 = time.process_time(), time.perf_counter()
        eng.update(insert=facts)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        gc.callbacks.remove(on_gc)
        derived = sum(info.size or 0 for info in eng.relations().values() if info.kind == "derived")
        print(
            f"engine {args.engine} scale {args.scale}: bulk {dt:.2f} s wall, {dc:.2f} s CPU; "
            f"{derived:,} derived: {derived / dt:,.0f}/s wall, {derived / dc:,.0f}/s CPU; "
            f"cyclic GC inside: {gc_ns[0] / 1e9:.2f} s; "
            f"(load avg {os.getloadavg()[0]:.1f})",
            flush=True,
        )
        del eng
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
