"""rune.ivm: an incrementally maintained Datalog engine (pure: no I/O, no asyncio).

Its Python API is described in docs/engine.md.

Pipeline: :mod:`~rune.ivm.parser` (text -> syntax tree) -> :mod:`~rune.ivm.analysis` (arity,
safety, stratification) -> :mod:`~rune.ivm.plan` (join orders compiled to Python) ->
:mod:`~rune.ivm.evaluate` (bulk and incremental evaluation over :mod:`~rune.ivm.store`, whose
relations are kept in :mod:`~rune.ivm.index` indexes and changed by :mod:`~rune.ivm.delta`
deltas; its stages are :mod:`~rune.ivm.bulk`, :mod:`~rune.ivm.closure`,
:mod:`~rune.ivm.maintain`, :mod:`~rune.ivm.swap` and :mod:`~rune.ivm.demand` around
:mod:`~rune.ivm.stored`, with all generated code made by :mod:`~rune.ivm.codegen`) ->
:mod:`~rune.ivm.explain`. :class:`Engine` (:mod:`~rune.ivm.engine`) is the facade:
it encodes values with :mod:`~rune.ivm.encoding`, hands out :mod:`~rune.ivm.results`, and
changes programs with :mod:`~rune.ivm.rebuild`.
"""

from rune.ivm.engine import SNAPSHOT, Change, Engine, FactSnapshot, RelationInfo
from rune.ivm.errors import (
    ArityError,
    DatalogError,
    DatalogSyntaxError,
    InvalidValueError,
    IterationLimitError,
    SafetyError,
    StratificationError,
    UnknownRelationError,
)
from rune.ivm.explain import Absence, Attempt, Derivation
from rune.ivm.values import EntityRef, Value

__all__ = [
    "SNAPSHOT",
    "Absence",
    "ArityError",
    "Attempt",
    "Change",
    "DatalogError",
    "DatalogSyntaxError",
    "Derivation",
    "Engine",
    "EntityRef",
    "FactSnapshot",
    "InvalidValueError",
    "IterationLimitError",
    "RelationInfo",
    "SafetyError",
    "StratificationError",
    "UnknownRelationError",
    "Value",
]
