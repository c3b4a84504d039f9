"""Built-in relations through which entities are visible to Datalog, and the built-in rules.

Maintained from entity events (fact events may not assert or retract them):

- ``entity(E)``                 every upserted entity
- ``parent(E, P)``              P is a direct parent of E in E's Cedar JSON ``parents``
- ``attr(E, Name, V)``          E's top-level attribute ``Name`` has the scalar value V
                                (string, Long, boolean or entity reference)
- ``attr_elem(E, Name, V)``     V is a scalar element of E's set attribute ``Name``
- ``tag(E, Key, V)``            E's tag ``Key`` has the scalar value V

Derived by the built-in rules (appended to every bundle's Datalog, see :data:`BUILTIN_RULES`):

- ``member_of(E, P)``  the hierarchy edges Cedar sees: every ``parent`` edge plus whatever a
  bundle's own rules derive into ``member_of`` (group membership from facts, for example).
  Cedar's ``in`` is evaluated on exactly these edges (Cedar takes their transitive closure).
- ``entity_in(E, A)``  the transitive closure of ``member_of`` (materialized): Cedar's ``E in A``
  for E != A, for use in Datalog rules.
- ``has_members(A)``   A is an ancestor of some entity (``entity_in(_, A)``): the Cedar
  slices ask ``entity_in`` only about such entities.
- ``in_cycle(E)``      E is its own ancestor: the hierarchy has a cycle through E. Cedar
  rejects entity data with a cycle anywhere, so while this relation is not empty every Cedar
  evaluation fails (closed), as Cedar would on all the entities (a slice may not see the cycle).

A fact event may assert ``member_of`` facts directly (they count for Cedar too); it may not
touch ``entity_in``. A bundle may add rules for any of these relations (its facts then join the
built-in ones); names a bundle uses for its own purposes should avoid them.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALLOW",
    "ATTR",
    "ATTR_ELEM",
    "BUILTIN_RULES",
    "DENY",
    "ENTITY",
    "ENTITY_IN",
    "ENTITY_RELATIONS",
    "HAS_MEMBERS",
    "IN_CYCLE",
    "MEMBER_OF",
    "PARENT",
    "PROTECTED_RELATIONS",
    "TAG",
]

ENTITY: Final = "entity"
PARENT: Final = "parent"
ATTR: Final = "attr"
ATTR_ELEM: Final = "attr_elem"
TAG: Final = "tag"
MEMBER_OF: Final = "member_of"
ENTITY_IN: Final = "entity_in"
HAS_MEMBERS: Final = "has_members"
IN_CYCLE: Final = "in_cycle"
ALLOW: Final = "allow"
DENY: Final = "deny"

ENTITY_RELATIONS: Final = frozenset({ENTITY, PARENT, ATTR, ATTR_ELEM, TAG})
"""Relations written only from entity events."""

PROTECTED_RELATIONS: Final = ENTITY_RELATIONS | {ENTITY_IN, HAS_MEMBERS, IN_CYCLE}
"""Relations that fact events may not assert or retract."""

BUILTIN_RULES: Final = """
// ---- RUNE built-in rules (appended to the bundle's Datalog) ----
member_of(E, P) :- parent(E, P).
entity_in(E, P) :- member_of(E, P).
entity_in(E, A) :- entity_in(E, P), member_of(P, A).
has_members(A) :- entity_in(_, A).
in_cycle(E) :- entity_in(E, E).
"""
