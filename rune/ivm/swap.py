"""Program swaps: a materialization of a new program takes over an old one's work.

Relations holding asserted facts are moved, not copied; a stratum whose rules and inputs are
unchanged is moved too; every other stratum is computed from scratch. Until the caller
commits, :meth:`ProgramSwap.give_back` undoes the moves so the old materialization keeps
serving (a rejected bundle changes nothing).
"""

from __future__ import annotations

from rune.ivm.bulk import BulkLoad
from rune.ivm.stored import Stored
from rune.ivm.strata import same_rows
from rune.ivm.syntax import literal_relation

__all__ = ["ProgramSwap"]


class ProgramSwap(BulkLoad):
    """Takes over an old materialization's relations; see the module docstring."""

    def take_over(
        self,
        old: Stored,
        asserted: dict[str, str],
        max_iterations: int | None = None,
    ) -> set[str]:
        """Become the materialization of a new program, reusing ``old``'s work.

        ``asserted`` maps each relation of ``old`` holding asserted facts to the relation
        that holds them under the new program; those relations are moved, not copied. A
        stratum whose rules are unchanged and whose inputs have unchanged contents is moved
        too; every other stratum is computed from scratch (bounded by ``max_iterations``).
        Returns the relations whose contents are the same as in ``old``.

        Once the caller commits to ``self``, ``old`` is unusable (they share relations). On any
        error ``old`` is left as it was (see :meth:`give_back`) and ``self`` must be discarded.
        """
        try:
            return self._take_over(old, asserted, max_iterations)
        except BaseException:
            self.give_back()
            raise

    def give_back(self) -> None:
        """Undo what :meth:`take_over` did to the old materialization's relations.

        Moved relations get their names and primary indexes back, and indexes built on them
        since the move are dropped (the old plans never read them). Only the old
        materialization is usable after.
        """
        for rel, name, indexes, primary in self._moved.values():
            rel.name = name
            rel.set_primary(primary)
            for cols in [c for c in rel.indexes if c not in indexes]:
                del rel.indexes[cols]
        self._moved = {}

    def _take_over(
        self, old: Stored, asserted: dict[str, str], max_iterations: int | None
    ) -> set[str]:
        moved = self._moved
        unchanged: set[str] = set()
        for old_name, new_name in asserted.items():
            rel = old.relations[old_name]
            moved[id(rel)] = (rel, rel.name, set(rel.indexes), rel.primary)
            rel.name = new_name
            rel.set_primary(self.primary(new_name))
            self.relations[new_name] = rel
            if old_name == new_name:
                unchanged.add(new_name)
        for name, rel in self.relations.items():
            if (
                name in unchanged
                or name in asserted.values()
                or name in self.analysis.rules_by_head
            ):
                continue
            if same_rows(rel, old.relations.get(name)):  # a base relation empty in both
                unchanged.add(name)
        previous = {frozenset(sp.stratum.rules): sp for sp in old.strata}
        for sp in self.strata:
            own = sp.stratum.relations
            prior = previous.get(frozenset(sp.stratum.rules))
            inputs = {literal_relation(lit) for rule in sp.stratum.rules for lit in rule.body}
            inputs.discard(None)
            if (
                prior is not None
                and prior.stratum.relations == own
                and inputs - set(own) <= unchanged
            ):
                for r in own:
                    rel = self.relations[r] = old.relations[r]
                    moved.setdefault(id(rel), (rel, rel.name, set(rel.indexes), rel.primary))
                    rel.set_primary(self.primary(r))
                    unchanged.add(r)
                continue
            self._materialize(sp, max_iterations)
            unchanged.update(r for r in own if same_rows(self.relations[r], old.relations.get(r)))
        for sp in self.strata:
            for plan in sp.plans():
                self._prepare_indexes(plan)
        self.replan()
        return unchanged
