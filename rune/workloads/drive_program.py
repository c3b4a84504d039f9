"""The Datalog program of the "drive" workload, and its roles and actions.

The program (:func:`drive_program`) carries the role lattice as facts (``role_implies``,
``role_perm``). Following Zanzibar's Leopard index it materializes the closures (``in_group``
for nested groups, ``ancestor`` for folders, ``folder_role`` for grants inherited down the
tree) and declares the per-document ``allow`` on-demand: a check ``allow(User, Action, Doc)``
is a few indexed lookups, never a users x documents relation.

Pitfall: benchmarks compare runs of this exact text; change it only on purpose.
"""

from __future__ import annotations

from rune.ivm.values import EntityRef

__all__ = ["ACTIONS", "ROLES", "drive_program"]

ROLES = ("owner", "editor", "viewer")
ACTIONS = tuple(EntityRef("Action", a) for a in ("read", "write", "share", "delete"))

_PROGRAM = """\
// "drive" reference workload (rune/workloads/drive.py), docs/design.md §6.
// Base relations: member(User, Group), subgroup(Group, ParentGroup),
// folder_parent(Folder, ParentFolder), doc_folder(Doc, Folder), grant(Subject, Role, Folder).

.on_demand allow.

// Role lattice: owner ⊇ editor ⊇ viewer; each role adds actions to those it implies.
role_implies("owner", "editor").
role_implies("editor", "viewer").
role_perm("viewer", Action::"read").
role_perm("editor", Action::"write").
role_perm("owner", Action::"share").
role_perm("owner", Action::"delete").

role_includes(R, R) :- role_perm(R, _).
role_includes(R, S) :- role_implies(R, S).
role_includes(R, T) :- role_includes(R, S), role_implies(S, T).
role_action(R, A) :- role_includes(R, S), role_perm(S, A).

// Group membership closure through nested groups (materialized, Leopard-style).
in_group(U, G) :- member(U, G).
in_group(U, G) :- in_group(U, H), subgroup(H, G).

// Folder ancestry (materialized).
ancestor(F, A) :- folder_parent(F, A).
ancestor(F, A) :- ancestor(F, P), folder_parent(P, A).

// Effective role of a subject on a folder: granted there or on any ancestor (materialized).
folder_role(S, R, F) :- grant(S, R, F).
folder_role(S, R, F) :- ancestor(F, A), grant(S, R, A).

// The per-document check, computed at lookup time through indexes.
allow(U, A, D) :- doc_folder(D, F), folder_role(U, R, F), role_action(R, A).
allow(U, A, D) :- doc_folder(D, F), in_group(U, G), folder_role(G, R, F), role_action(R, A).
"""


def drive_program() -> str:
    """Datalog source of the "drive" workload (dialect of docs/design.md §3)."""
    return _PROGRAM
