"""What the validation file formats share: the report, the file error, relationship checks
against a model, and a compiled model over a fresh engine (:class:`Store`) that answers with
contextual relationships added for one question.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rune.errors import RuneError
from rune.ivm import Engine
from rune.models.check import ZanzibarView
from rune.models.compile import CompiledModel, compile_model
from rune.models.errors import ModelError
from rune.models.ir import Model
from rune.models.names import RELATIONSHIP
from rune.models.tuples import Relationship

__all__ = [
    "Failure",
    "Report",
    "Store",
    "ValidationFileError",
    "check_relationship",
    "compile_checked",
    "load_yaml",
    "read_text",
]


class ValidationFileError(ModelError):
    """The file is not a valid validation file (syntax, schema, relationships)."""


@dataclass(frozen=True, slots=True)
class Failure:
    where: str
    """The assertion, e.g. ``assertTrue: document:1#view@user:anne``."""
    detail: str
    """What RUNE found: the path that grants, or the step that is missing."""


@dataclass(slots=True)
class Report:
    path: str
    passed: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_relationship(model: Model, rel: Relationship) -> str | None:
    """Why ``rel`` cannot be written under ``model`` (None when it can)."""
    t = model.types.get(rel.object_type)
    if t is None:
        return f"unknown object type {rel.object_type!r}"
    r = t.relations.get(rel.relation)
    if r is None:
        return f"{rel.object_type!r} has no relation {rel.relation!r}"
    s = rel.subject
    if s.type not in model.types:
        return f"unknown subject type {s.type!r}"
    for st in r.types:
        if st.type != s.type:
            continue
        if s.id == "*" and st.wildcard:
            return None
        if s.id != "*" and not st.wildcard and (st.relation or "") == s.relation:
            return None
    allowed = ", ".join(map(str, r.types)) or "none (a permission)"
    return f"{rel.object_type}#{rel.relation} does not allow subject {s} (allowed: {allowed})"


class Store:
    """A compiled model over an engine, with contextual relationships."""

    def __init__(self, compiled: CompiledModel, rels: Iterable[Relationship]) -> None:
        self.compiled = compiled
        self.engine = Engine(compiled.datalog)
        self.add(rels)
        self.view = ZanzibarView(self.engine)

    def add(self, rels: Iterable[Relationship]) -> None:
        rows = [tuple(r.fact()[1:]) for r in rels]
        if rows:
            self.engine.update(insert={RELATIONSHIP: rows})

    def with_context(self, rels: Sequence[Relationship], fn: Callable[[], Any]) -> Any:
        new = [
            tuple(r.fact()[1:])
            for r in rels
            if not self.engine.contains(RELATIONSHIP, tuple(r.fact()[1:]))
        ]
        new = list(dict.fromkeys(new))
        if new:
            self.engine.update(insert={RELATIONSHIP: new})
        try:
            return fn()
        finally:
            if new:
                self.engine.update(delete={RELATIONSHIP: new})


def compile_checked(model: Model, where: str) -> CompiledModel:
    """``model`` compiled, and loaded once to check that the engine accepts the program."""
    compiled = compile_model(model)
    try:
        Engine(compiled.datalog)
    except RuneError as exc:
        raise ValidationFileError(
            f"{where}: the model compiles to an invalid program: {exc}"
        ) from None
    return compiled


def load_yaml(text: str, path: str) -> Any:
    """``text`` as YAML (a :class:`ValidationFileError` naming ``path`` when it is not)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationFileError(f"{path}: invalid YAML: {exc}") from None


def read_text(path: Path, name: str) -> str:
    """The text of a file that validation file ``name`` refers to."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFileError(f"{name}: {path}: {exc.strerror or exc}") from None
