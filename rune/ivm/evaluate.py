"""Evaluation: the materialization of one program, assembled from its stages.

:class:`Materialization` owns the stored relations of one compiled program and keeps every
materialized relation equal to the program's model over the current base facts. Each stage
is a module a newcomer can find by name:

* :mod:`rune.ivm.stored`: the shared state (relations, plans, views) and semi-naive insertion;
* :mod:`rune.ivm.strata`: the compiled plans of each stratum and the primary index choice;
* :mod:`rune.ivm.bulk`: strata computed from scratch, with :mod:`rune.ivm.closure` for
  transitive closures;
* :mod:`rune.ivm.maintain`: updates by counting (non-recursive) and DRed (recursive);
* :mod:`rune.ivm.swap`: a new program taking over an old one's relations;
* :mod:`rune.ivm.demand`: on-demand relations, computed at lookup time;
* :mod:`rune.ivm.codegen`: every generated function.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rune.ivm.analysis import is_internal
from rune.ivm.demand import OnDemand
from rune.ivm.index import EMPTY, Row
from rune.ivm.maintain import Maintenance
from rune.ivm.stored import ALL_COLUMNS
from rune.ivm.swap import ProgramSwap
from rune.ivm.syntax import Rule

__all__ = ["Materialization"]


class Materialization(ProgramSwap, Maintenance, OnDemand):
    """Stored relations of one program, kept equal to its model over the base facts.

    ``optimize=False`` compiles every plan with the rule body's written order of positive
    atoms instead of the greedy one (same results, different cost).
    """

    def rows(self, name: str) -> Iterable[Row]:
        if self.is_on_demand(name):
            return self.demand(name, (), None, exists=False)  # type: ignore[no-any-return]
        return self.relations[name]

    def contains(self, name: str, row: Row) -> bool:
        if name in self.on_demand:
            return bool(self.demand(name, ALL_COLUMNS[len(row)], row, exists=True))
        return row in self.relations[name]

    def lookup(self, name: str, cols: tuple[int, ...], row: Row) -> Iterable[Row]:
        """Rows of ``name`` equal to ``row`` at ``cols`` (other positions of ``row`` ignored)."""
        if self.is_on_demand(name):
            return self.demand(name, cols, row, exists=False)  # type: ignore[no-any-return]
        rel = self.relations[name]
        if not cols:
            return rel
        if len(cols) == rel.arity:
            return (row,) if row in rel else EMPTY
        index = rel.index(cols)
        return index.full_rows(index.key(row))

    def user_relations(self) -> Iterator[str]:
        return (name for name in self.relations if not is_internal(name))

    def rules_for(self, name: str) -> list[Rule]:
        return self.analysis.rules_by_head.get(name, [])
