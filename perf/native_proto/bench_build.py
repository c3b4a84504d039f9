"""Prototype native kernel vs the engine's Python bulk index build (not part of RUNE).

    cd perf/native_proto && maturin build --release -i python3
    python3 -m pip install --target /tmp/rune-native target/wheels/*.whl
    python3 perf/native_proto/bench_build.py /tmp/rune-native

Builds the index maps of the drive workload's relations at scale 1.0 (rows read from the
loaded engine, in its storage order) with ``index.builder`` and with the Rust
``rune_ivm_native.build``, twice each (process CPU time), and checks the maps are equal.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else "/tmp/rune-native")
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE.parent.parent))
    import drive
    import rune_ivm_native  # type: ignore[import-not-found]

    from rune.ivm import Engine, index

    gc.disable()
    eng = Engine(drive.drive_program())
    eng.update(insert=drive.generate(1.0, 1))
    rel = eng._mat.relations
    cases = {
        "member (0,)": (list(rel["member"]), 2, [(0,)]),
        "grant (2,)": (list(rel["grant"]), 3, [(2,)]),
        "folder_role (0,2)": (list(rel["folder_role"]), 3, [(0, 2)]),
        "in_group (0,),(1,)": (list(rel["in_group"]), 2, [(0,), (1,)]),
    }
    for name, (rows, arity, shapes) in cases.items():
        times: dict[str, list[float]] = {"python": [], "rust": []}
        for impl in ("python", "rust", "python", "rust"):
            maps = [index.GroupMap() for _ in shapes]
            c0 = time.process_time()
            if impl == "python":
                index.builder(arity, tuple(shapes), index.GROUP_LIMIT)(maps, rows)
            else:
                rune_ivm_native.build(arity, [list(s) for s in shapes], maps, rows, 64)
            times[impl].append(time.process_time() - c0)
            ref = [index.GroupMap() for _ in shapes]
            index.builder(arity, tuple(shapes), index.GROUP_LIMIT)(ref, rows)
            for a, b in zip(ref, maps, strict=True):
                assert a.keys() == b.keys(), name
                assert all(sorted(a[k]) == sorted(b[k]) for k in a), name
        py, rs = times["python"], times["rust"]
        print(
            f"{name:22s} rows {len(rows):>9,}  python {min(py):.3f}-{max(py):.3f} s  "
            f"rust {min(rs):.3f}-{max(rs):.3f} s  speed-up {min(py) / min(rs):.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
