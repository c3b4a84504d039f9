"""The Datalog names of a compiled Zanzibar model.

Relationships are facts of one base relation, :data:`RELATIONSHIP`, the tuple as written;
every relation and permission ``T#r`` becomes the derived relation :func:`datalog_name`
``(T, r)``. :data:`SUBJECT`, :data:`OBJECT` and :data:`META` are the helper relations the
compiled programs define, which checks and lookups (:mod:`rune.models.check`) read.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["META", "OBJECT", "RELATIONSHIP", "SUBJECT", "datalog_name"]

RELATIONSHIP: Final = "relationship"
"""``relationship(ObjectType, ObjectId, Relation, SubjectType, SubjectId, SubjectRelation)``."""
SUBJECT: Final = "zanzibar_subject"
"""``zanzibar_subject(Type, Id)``: every plain subject some relationship names."""
OBJECT: Final = "zanzibar_object"
"""``zanzibar_object(Type, Id)``: every object some relationship names (OpenFGA models)."""
META: Final = "zanzibar_relation"
"""``zanzibar_relation(Type, Relation, DatalogName, Mode)``: the model, stated as facts."""
_SAFE: Final = re.compile(r"[A-Za-z0-9_]")


def _mangle(name: str) -> str:
    out = "".join(c if _SAFE.match(c) else ("_" if c == "/" else f"_{ord(c):x}_") for c in name)
    return out if re.match(r"[a-z]", out) else "t_" + out


def datalog_name(type_name: str, relation: str) -> str:
    """The Datalog relation of ``type_name#relation``: ``document__view``; ``/`` of a prefixed
    name becomes ``_``, other characters outside ``[A-Za-z0-9_]`` ``_<hex>_``."""
    return f"{_mangle(type_name)}__{_mangle(relation)}"
