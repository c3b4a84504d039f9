"""Incremental maintenance: base-relation changes flow stratum by stratum.

Non-recursive strata use *counting*: each stored row keeps its number of derivations, and a
delta rule per body literal ``k`` joins the delta of ``k`` with the new version of the
literals before it and the old version of those after it (the bilinear rule of DBSP), so the
summed weights are the exact change in derivation counts. Recursive strata use *DRed*:
over-delete everything with a derivation through a removed row (on the old state), remove it,
re-derive what still has a one-step derivation (one compiled check per relation), then
propagate insertions semi-naively. Each stratum's net change is recorded as a
:class:`~rune.ivm.store.Delta`, which later strata and the caller see.
"""

from __future__ import annotations

from rune.ivm.delta import Delta
from rune.ivm.index import Row
from rune.ivm.store import EMPTY_ROWS
from rune.ivm.stored import Stored
from rune.ivm.strata import StratumPlans, source_negated, source_relation

__all__ = ["Maintenance"]


class Maintenance(Stored):
    """Applies net base changes; see the module docstring."""

    def apply(self, plus: dict[str, set[Row]], minus: dict[str, set[Row]]) -> dict[str, Delta]:
        """Apply net base changes (``plus`` absent rows, ``minus`` present rows)."""
        deltas: dict[str, Delta] = {}
        for name in plus.keys() | minus.keys():
            rel = self.relations[name]
            d = Delta(plus.get(name, set()), minus.get(name, set()))
            rel.remove(d.minus)
            rel.insert(d.plus)
            if d:
                deltas[name] = d
        self._deltas = deltas
        self._views = {}
        try:
            for sp in self.strata:
                if not sp.inputs.isdisjoint(deltas.keys()):
                    if sp.stratum.recursive:
                        self._dred(sp)
                    else:
                        self._count(sp)
        finally:
            self._deltas = {}
            self._views = {}
        return deltas

    def _count(self, sp: StratumPlans) -> None:
        name = sp.stratum.relations[0]
        acc: dict[Row, int] = {}
        for plan in sp.lower:
            delta = self._deltas.get(source_relation(plan))
            if delta:
                assert plan.source is not None
                self._run(plan, delta.signed(), acc, old_after=plan.source)
        rel = self.relations[name]
        counts = rel.counts  # rows with more than one derivation; other stored rows have one
        # a row losing derivations is stored; only rows gaining some may be new
        gaining = [row for row, weight in acc.items() if weight > 0]
        present = rel.present(gaining) if rel and gaining else EMPTY_ROWS
        added: dict[Row, int] = {}
        removed: list[Row] = []
        for row, weight in acc.items():
            if weight > 0:
                before = counts.get(row, 1) if row in present else 0
            elif weight:
                before = counts.get(row, 1)
            else:
                continue
            after = before + weight
            if after < 0:
                raise AssertionError(f"negative derivation count for {name}{row}")
            if not before:
                added[row] = after
            elif not after:
                removed.append(row)
            elif after == 1:
                del counts[row]
            else:
                counts[row] = after
        rel.remove(removed)
        rel.insert(added)
        counts.update((row, n) for row, n in added.items() if n != 1)
        if added or removed:
            self._deltas[name] = Delta(set(added), set(removed))

    def _dred(self, sp: StratumPlans) -> None:
        own = sp.stratum.relations
        deltas = self._deltas
        # 1. over-delete, on the old state
        doomed: dict[str, set[Row]] = {r: set() for r in own}
        frontier: dict[str, set[Row]] = {r: set() for r in own}
        for plan in sp.lower:
            delta = deltas.get(source_relation(plan))
            rows = None if delta is None else delta.plus if source_negated(plan) else delta.minus
            if rows:
                out: set[Row] = set()
                self._run(plan, rows, out, old=True)
                head = plan.rule.head.relation
                fresh = out - doomed[head]
                doomed[head].update(fresh)
                frontier[head].update(fresh)
        if any(frontier.values()):
            # own relations do not change until step 2: their views (and the old versions of
            # the lower strata) are resolved once for all rounds
            ready = self._ready(sp.internal, old=True)
            while any(frontier.values()):
                nxt: dict[str, set[Row]] = {r: set() for r in own}
                for fn, source, head, views in ready:
                    rows = frontier[source]
                    if rows:
                        out = set()
                        fn(rows, out, None, *views)
                        fresh = out - doomed[head]
                        doomed[head].update(fresh)
                        nxt[head].update(fresh)
                frontier = nxt
        # 2. remove
        for r in own:
            self.relations[r].remove(doomed[r])
        # 3. re-derive what still has a derivation, 4. insert, semi-naively
        seeds: dict[str, set[Row]] = {r: set() for r in own}
        for r in own:
            if not doomed[r] or r not in sp.checks:
                continue
            plans = sp.head_bound[r]
            views = [self._view(a, old=False) for plan in plans for a in plan.accesses]
            sp.checks[r](doomed[r], seeds[r], *views)
        for plan in sp.lower:
            delta = deltas.get(source_relation(plan))
            rows = None if delta is None else delta.minus if source_negated(plan) else delta.plus
            if rows:
                self._run(plan, rows, seeds[plan.rule.head.relation])
        inserted = self._propagate(sp, seeds)  # updates are never bounded (see Engine)
        for r in own:
            added = inserted[r] - doomed[r]
            removed = doomed[r] - inserted[r]
            if added or removed:
                deltas[r] = Delta(added, removed)
