"""The "drive" reference workload of docs/design.md §6: moved to :mod:`rune.workloads.drive`.

It lives in the package so that ``rune benchmark`` can generate it from an installed RUNE;
this module re-exports it so ``perf/bench_*.py`` (``import drive``) keep working unchanged.
"""

from __future__ import annotations

from rune.workloads.drive import (
    ACTIONS,
    BASE,
    CEDAR,
    KINDS,
    ROLES,
    Change,
    Row,
    allow_oracle,
    bundle,
    changes,
    check_queries,
    check_requests,
    drive_program,
    entity_events,
    fact_events,
    generate,
    reference,
)

__all__ = [
    "ACTIONS",
    "BASE",
    "CEDAR",
    "KINDS",
    "ROLES",
    "Change",
    "Row",
    "allow_oracle",
    "bundle",
    "changes",
    "check_queries",
    "check_requests",
    "drive_program",
    "entity_events",
    "fact_events",
    "generate",
    "reference",
]
