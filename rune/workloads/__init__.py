"""Generated workloads, shared by ``perf/`` and ``rune benchmark``.

- :mod:`rune.workloads.drive`: the "drive" reference workload of docs/design.md §6.
"""

from __future__ import annotations

__all__: list[str] = []
