"""The model both front ends produce: types, relations and userset rewrites.

A SpiceDB ``relation`` is a :class:`Relation` with allowed subject types and the expression
:class:`This` (its own relationships); a ``permission`` has no allowed types and any
expression. An OpenFGA ``define`` is a relation whose expression may mix ``This`` (the
``[...]`` direct types) with computed usersets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Arrow",
    "Computed",
    "Exclusion",
    "Expr",
    "Intersection",
    "Model",
    "Nil",
    "Relation",
    "SubjectType",
    "This",
    "TypeDef",
    "Union",
]


@dataclass(frozen=True, slots=True)
class SubjectType:
    """One allowed subject type: ``user``, ``group#member`` (``relation``) or ``user:*``."""

    type: str
    relation: str | None = None
    wildcard: bool = False

    def __str__(self) -> str:
        if self.wildcard:
            return f"{self.type}:*"
        return f"{self.type}#{self.relation}" if self.relation else self.type


@dataclass(frozen=True, slots=True)
class This:
    """The relation's own relationships (SpiceDB: a relation; OpenFGA: ``[types]``)."""


@dataclass(frozen=True, slots=True)
class Nil:
    """The empty set (SpiceDB ``nil``)."""


@dataclass(frozen=True, slots=True)
class Computed:
    """Another relation or permission of the same object (``viewer``)."""

    relation: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Arrow:
    """``tupleset->relation`` (OpenFGA ``relation from tupleset``): ``relation`` on every
    subject of the object's ``tupleset`` relationships."""

    tupleset: str
    relation: str
    line: int = 0
    column: int = 0


@dataclass(frozen=True, slots=True)
class Union:
    children: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Intersection:
    children: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Exclusion:
    base: Expr
    subtract: Expr


Expr = This | Nil | Computed | Arrow | Union | Intersection | Exclusion


@dataclass(slots=True)
class Relation:
    name: str
    types: tuple[SubjectType, ...]
    expr: Expr
    permission: bool = False
    """SpiceDB ``permission`` (no relationships of its own)."""
    source: str = ""
    """The definition as written (comments in the compiled program)."""
    line: int = 0
    column: int = 0


@dataclass(slots=True)
class TypeDef:
    name: str
    relations: dict[str, Relation] = field(default_factory=dict)
    line: int = 0
    column: int = 0


@dataclass(slots=True)
class Model:
    types: dict[str, TypeDef]
    dialect: str
    """``spicedb`` or ``openfga``."""

    def relation(self, type_name: str, name: str) -> Relation | None:
        t = self.types.get(type_name)
        return t.relations.get(name) if t is not None else None
