"""Relationships in SpiceDB's and OpenFGA's notations, and the fact each one is.

- SpiceDB: ``document:1#viewer@user:anne``, ``document:1#viewer@group:eng#member``,
  ``document:1#viewer@user:*``;
- OpenFGA: ``{"user": "user:anne", "relation": "viewer", "object": "document:1"}`` (a userset
  user is ``group:eng#member``, a wildcard ``user:*``).

Both are the fact ``["relationship", ObjectType, ObjectId, Relation, SubjectType, SubjectId,
SubjectRelation]`` (``SubjectRelation`` is ``""`` for a plain subject), so a relationship event
is keyed and compacted like that fact event: ``f:["relationship","document","1","viewer",
"user","anne",""]``. Object ids may not be ``*``; a wildcard has no subject relation.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from rune.models.errors import RelationshipError
from rune.models.names import RELATIONSHIP

__all__ = [
    "Relationship",
    "Subject",
    "fact_event",
    "is_relationship_event",
    "parse_object",
    "parse_relationship",
    "parse_subject",
    "parse_tuple",
]

_NAME: Final = r"[^\t\n\v\f\r :#@*]+"
_ID: Final = r"[^\t\n\v\f\r #@]+"
"""Names and ids exclude ASCII whitespace and the separators (the same classes as the
patterns of openapi.yaml, where ``\\s`` would mean something else than in Python)."""
_OBJECT: Final = re.compile(rf"({_NAME}):({_ID})\Z")
_SUBJECT: Final = re.compile(rf"({_NAME}):({_ID}|\*)(?:#({_NAME}))?\Z")
_REL: Final = re.compile(rf"({_NAME}):({_ID})#({_NAME})@(.+)\Z")
_MAX: Final = 1024


class Subject(NamedTuple):
    type: str
    id: str
    relation: str = ""

    def __str__(self) -> str:
        return f"{self.type}:{self.id}" + (f"#{self.relation}" if self.relation else "")


class Relationship(NamedTuple):
    object_type: str
    object_id: str
    relation: str
    subject: Subject

    def __str__(self) -> str:
        return f"{self.object_type}:{self.object_id}#{self.relation}@{self.subject}"

    def fact(self) -> list[str]:
        """The fact (without ``op``): ``["relationship", ...six strings]``."""
        s = self.subject
        return [
            RELATIONSHIP,
            self.object_type,
            self.object_id,
            self.relation,
            s.type,
            s.id,
            s.relation,
        ]


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise RelationshipError(f"{where}: expected a string, got {type(value).__name__}")
    if len(value) > _MAX:
        raise RelationshipError(f"{where}: longer than {_MAX} characters")
    return value


def parse_object(text: object, where: str = "resource") -> tuple[str, str]:
    """``document:1`` -> ``("document", "1")``."""
    m = _OBJECT.match(_text(text, where))
    if m is None or m.group(2) == "*":
        raise RelationshipError(f"{where}: expected type:id, got {text!r}")
    return m.group(1), m.group(2)


def parse_subject(text: object, where: str = "subject") -> Subject:
    """``user:anne``, ``group:eng#member`` or ``user:*``."""
    m = _SUBJECT.match(_text(text, where))
    if m is None:
        raise RelationshipError(
            f"{where}: expected type:id, type:id#relation or type:*, got {text!r}"
        )
    if m.group(2) == "*" and m.group(3):
        raise RelationshipError(f"{where}: a wildcard has no relation, got {text!r}")
    return Subject(m.group(1), m.group(2), m.group(3) or "")


def parse_relationship(text: object, where: str = "relationship") -> Relationship:
    """SpiceDB's ``document:1#viewer@user:anne`` (a trailing caveat ``[name]`` is refused)."""
    raw = _text(text, where).strip()
    if raw.endswith("]"):
        raise RelationshipError(f"{where}: caveated relationships are not supported: {raw!r}")
    m = _REL.match(raw)
    if m is None:
        raise RelationshipError(f"{where}: expected type:id#relation@subject, got {raw!r}")
    if m.group(2) == "*":
        raise RelationshipError(f"{where}: an object id cannot be '*'")
    return Relationship(m.group(1), m.group(2), m.group(3), parse_subject(m.group(4), where))


def parse_tuple(obj: object, where: str = "tuple") -> Relationship:
    """OpenFGA's ``{"user", "relation", "object"}`` (a ``condition`` is refused)."""
    if not isinstance(obj, Mapping):
        raise RelationshipError(f"{where}: expected an object with user, relation, object")
    extra = set(obj) - {"user", "relation", "object", "condition"}
    if extra:
        raise RelationshipError(f"{where}: unknown field {sorted(extra)[0]!r}")
    if obj.get("condition"):
        raise RelationshipError(f"{where}: conditional tuples are not supported")
    otype, oid = parse_object(obj.get("object"), f"{where}.object")
    rel = _text(obj.get("relation"), f"{where}.relation")
    if not re.fullmatch(_NAME, rel):
        raise RelationshipError(f"{where}.relation: invalid relation {rel!r}")
    return Relationship(otype, oid, rel, parse_subject(obj.get("user"), f"{where}.user"))


def is_relationship_event(event: Mapping[str, Any]) -> bool:
    """An ``assert``/``retract`` event naming a relationship or an OpenFGA tuple."""
    return event.get("op") in ("assert", "retract") and (
        "relationship" in event or "tuple" in event or "object" in event
    )


def fact_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fact event a relationship event stands for (raise RelationshipError).

    ``{"op", "relationship": "document:1#viewer@user:anne"}``, ``{"op", "tuple": {"user",
    "relation", "object"}}`` and ``{"op", "user", "relation", "object"}`` are accepted;
    ``tenant`` and ``ts`` are kept."""
    op = event.get("op")
    keep = {k: event[k] for k in ("tenant", "ts") if k in event}
    body = {k: v for k, v in event.items() if k not in ("op", "tenant", "ts")}
    if "relationship" in body:
        if set(body) != {"relationship"}:
            raise RelationshipError(f"unknown field {sorted(set(body) - {'relationship'})[0]!r}")
        rel = parse_relationship(body["relationship"])
    elif "tuple" in body:
        if set(body) != {"tuple"}:
            raise RelationshipError(f"unknown field {sorted(set(body) - {'tuple'})[0]!r}")
        rel = parse_tuple(body["tuple"])
    else:
        rel = parse_tuple(body, "event")
    return {"op": op, "fact": rel.fact(), **keep}
