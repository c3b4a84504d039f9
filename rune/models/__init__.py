"""Zanzibar models (SpiceDB schemas, OpenFGA models) compiled to incremental Datalog.

::

    from rune.models import compile_spicedb, ZanzibarView
    compiled = compile_spicedb(schema_text)          # CompiledModel: .datalog, .bundle()
    engine = Engine(compiled.datalog)
    fact = parse_relationship("document:1#viewer@user:anne").fact()
    engine.update(insert={fact[0]: [tuple(fact[1:])]})
    ZanzibarView(engine).check("document:1", "view", "user:anne")

See docs/zanzibar.md for the mapping, the events and the endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from rune.models.check import LookupPage, ZanzibarView, render_path
from rune.models.compile import (
    META,
    RELATIONSHIP,
    SUBJECT,
    CompiledModel,
    compile_model,
    datalog_name,
)
from rune.models.errors import (
    ModelError,
    ModelSyntaxError,
    ModelValidationError,
    RelationshipError,
    UnsupportedFeatureError,
)
from rune.models.ir import Model
from rune.models.openfga import parse_model as parse_openfga
from rune.models.spicedb import parse_schema as parse_spicedb
from rune.models.tuples import (
    Relationship,
    Subject,
    fact_event,
    is_relationship_event,
    parse_object,
    parse_relationship,
    parse_subject,
    parse_tuple,
)

__all__ = [
    "META",
    "RELATIONSHIP",
    "SUBJECT",
    "CompiledModel",
    "LookupPage",
    "Model",
    "ModelError",
    "ModelSyntaxError",
    "ModelValidationError",
    "Relationship",
    "RelationshipError",
    "Subject",
    "UnsupportedFeatureError",
    "ZanzibarView",
    "compile_model",
    "compile_openfga",
    "compile_spicedb",
    "datalog_name",
    "fact_event",
    "is_relationship_event",
    "parse_object",
    "parse_openfga",
    "parse_relationship",
    "parse_spicedb",
    "parse_subject",
    "parse_tuple",
    "render_path",
]


def compile_spicedb(schema: str, *, materialize: Literal["auto", "all"] = "auto") -> CompiledModel:
    """Parse and compile a SpiceDB schema (raise :class:`ModelError` with line:column)."""
    return compile_model(parse_spicedb(schema), materialize=materialize)


def compile_openfga(
    model: str | Mapping[str, Any], *, materialize: Literal["auto", "all"] = "auto"
) -> CompiledModel:
    """Parse and compile an OpenFGA model: DSL text, JSON text or the parsed JSON."""
    return compile_model(parse_openfga(model), materialize=materialize)
