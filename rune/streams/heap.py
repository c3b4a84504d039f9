"""Keeping Python's cyclic garbage collector off the views.

The views are millions of small containers that live as long as the process. CPython's full
(generation 2) collection visits every one of them: about 0.4 s at the drive workload's scale
0.2 and seconds at scale 1, a pause every request waiting at that moment pays. ``settle``
collects once, then freezes the survivors (``gc.freeze``): later collections skip them.

Pitfall: frozen objects that become cyclic garbage are never collected, and a bundle swap
drops a whole materialization that contains cycles (compiled plans). So ``settle`` unfreezes
and collects everything first; the service settles after catch-up and after each bundle
swap, when a pause costs least (the swap itself takes longer).
"""

from __future__ import annotations

import gc
import time

__all__ = ["settle"]


def settle() -> float:
    """Collect all cyclic garbage and freeze what survives; return the seconds it took."""
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - start
