"""The "drive" reference workload of docs/design.md §6, generated deterministically from a seed.

Scale 1.0 is the workload of record: 100k users, 10k groups nested up to depth 6, 50k folders
nested up to depth 8, 500k documents, 100k grants with roles owner ⊇ editor ⊇ viewer inherited
down the folder tree, about 1.2M base facts. Every count scales linearly with ``scale``; the
depth bounds do not.

Entities are :class:`~rune.ivm.values.EntityRef` values ``User::"u17"``, ``Group::"g3"``,
``Folder::"f42"``, ``Doc::"d9"``, ``Action::"read"``; roles are the strings ``"owner"``,
``"editor"``, ``"viewer"``.

Base relations (what :func:`generate` returns, one list of tuples per relation):

=====================================  ==========================================================
``member(User, Group)``                direct memberships, 1..10 per user (mean 5.5)
``subgroup(Group, Group)``             child group is nested in parent group (depth <= 6)
``folder_parent(Folder, Folder)``      a folder's parent folder (a forest, depth <= 8)
``doc_folder(Doc, Folder)``            the folder that holds a document (one per document)
``grant(Subject, Role, Folder)``       a User or Group holds Role on Folder and everything below
=====================================  ==========================================================

The program (:func:`drive_program`) derives ``allow(User, Action, Doc)`` from them; the
single-change workloads (:func:`changes`) keep the graphs acyclic and their depth bounded.

As contract-v1 JSON for ``rune.Authorizer`` (``rune benchmark``, ``perf/bench_authorizer.py``):
:func:`bundle` (the program, optionally with the Cedar policies :data:`CEDAR`),
:func:`fact_events`, :func:`entity_events` (the same graph as Cedar entities) and
:func:`check_requests`. ``perf/drive.py`` re-exports this module for the benchmarks.

This module is the workload's one entry point; the parts: the program, roles and actions
(:mod:`~rune.workloads.drive_program`), the base facts (:mod:`~rune.workloads.drive_facts`),
the change stream (:mod:`~rune.workloads.drive_changes`), check questions and a plain-Python
reference (:mod:`~rune.workloads.drive_checks`), contract-v1 JSON
(:mod:`~rune.workloads.drive_contract`).

Pitfall: generated facts and the seeded change stream are byte-for-byte the same for the same
arguments; benchmarks depend on it.
"""

from __future__ import annotations

from rune.workloads.drive_changes import KINDS, Change, changes
from rune.workloads.drive_checks import allow_oracle, check_queries, reference
from rune.workloads.drive_contract import (
    CEDAR,
    bundle,
    check_requests,
    entity_events,
    fact_events,
)
from rune.workloads.drive_facts import BASE, Row, generate
from rune.workloads.drive_program import ACTIONS, ROLES, drive_program

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
