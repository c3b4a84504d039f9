"""On-demand relations: computed at lookup time from plans compiled at their first use.

Plans are compiled per (relation, bound columns, exists) with join orders from the data's
statistics, and may choose the primary index of a stored relation no other plan reads
(:data:`SINGLE_INDEX_SLACK`). :meth:`OnDemand.checker` compiles the fast membership check
``Engine.contains`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rune.ivm.codegen import define
from rune.ivm.index import Row
from rune.ivm.plan import Access, Plan, compile_plan
from rune.ivm.stored import ALL_COLUMNS, Stored

__all__ = ["SINGLE_INDEX_SLACK", "OnDemand"]


SINGLE_INDEX_SLACK = 2.0
"""On-demand plans read a free relation through a single index unless that costs more than
this many times the plans using several (see ``OnDemand._demand_plans_for``)."""


class OnDemand(Stored):
    """Evaluates on-demand relations; see the module docstring."""

    def demand(
        self, name: str, cols: tuple[int, ...], head: Row | None, exists: bool, run: bool = True
    ) -> Any:
        """Evaluate on-demand relation ``name`` with ``head`` values bound at ``cols``.

        Returns a bool with ``exists``, else the set of matching rows. Without ``run`` it only
        prepares the plans (and returns ``None``).
        """
        key = (name, cols, exists)
        ready = self._demand_plans.get(key)
        if ready is None:
            ready = []
            reads: list[Access] = []
            for plan in self._demand_plans_for(name, cols, exists):
                self._prepare_indexes(plan)
                self._read_by_plans.update(a.relation for a in plan.accesses)
                # on-demand plans always read the current version: views are live, resolve once
                views = tuple(self._view(a, old=False) for a in plan.accesses)
                ready.append((plan.fn, views))
                reads.extend(plan.accesses)
            self._demand_plans[key] = ready
            self._demand_reads[key] = reads
        if not run:
            return None
        if exists:
            return any(fn(None, None, head, *views) for fn, views in ready)
        out: dict[Row, int] = {}
        for fn, views in ready:
            fn(None, out, head, *views)
        return out.keys()

    def prepare_demand(self, name: str, cols: tuple[int, ...], exists: bool) -> None:
        """Compile the plans :meth:`demand` would run for these arguments, and those of the
        on-demand relations they read (as :class:`DemandView` would at their first use)."""
        todo = [(name, cols, exists)]
        seen = set()
        while todo:
            key = todo.pop()
            if key in seen:
                continue
            seen.add(key)
            self.demand(key[0], key[1], None, key[2], run=False)  # compiled once
            for access in self._demand_reads[key]:
                if not self.is_on_demand(access.relation):
                    continue
                if access.kind == "index":
                    todo.append((access.relation, access.cols, False))
                else:  # a membership test or a scan
                    arity = self.analysis.relations[access.relation].arity
                    todo.append((access.relation, ALL_COLUMNS[arity], True))
                    todo.append((access.relation, (), False))

    def _demand_plans_for(self, name: str, cols: tuple[int, ...], exists: bool) -> list[Plan]:
        """Plans of on-demand relation ``name``'s rules with ``cols`` bound, ordered by the data.

        Index selection: a stored relation that no compiled plan reads yet (*free*; typically
        one only on-demand rules read) gets the one index that makes these plans cheapest as
        its primary, when that costs at most :data:`SINGLE_INDEX_SLACK` times the plans free to
        use several indexes. Every update maintains every index, so a second index on a large
        relation is paid by the updates (allow's rules would otherwise key ``folder_role`` by
        subject and folder in one rule and by role and folder in the other).
        """
        rules = self.analysis.rules_by_head[name]

        def plan_all(restrict: dict[str, tuple[int, ...]]) -> list[Plan]:
            def primary(rel: str) -> tuple[int, ...] | None:
                return restrict.get(rel) or self.primary(rel)

            def probe(rel: str, bound: tuple[int, ...]) -> tuple[int, ...]:
                only = restrict.get(rel)
                if only is None:
                    return bound
                return only if set(only) <= set(bound) else ()

            return [
                compile_plan(
                    rule,
                    self.dictionary,
                    bound=cols,
                    exists=exists,
                    optimize=self.optimize,
                    primary=primary,
                    estimate=self._estimate if self.optimize else None,
                    probe=probe if restrict else None,
                )
                for rule in rules
            ]

        plans = plan_all({})
        if not self.optimize:
            return plans
        free = {
            a.relation
            for p in plans
            for a in p.accesses
            if a.relation in self.primaries and a.relation not in self._read_by_plans
        }
        chosen: dict[str, tuple[int, ...]] = {}
        for rel in sorted(free):
            options = {a.cols for p in plans for a in p.accesses if a.relation == rel}
            options.discard(())
            if not options:
                continue
            options.add(self.primaries[rel])
            if len(options) == 1:
                continue
            unrestricted = sum(p.cost for p in plans)
            costs = {c: sum(p.cost for p in plan_all({**chosen, rel: c})) for c in options}
            best = min(sorted(costs), key=costs.__getitem__)
            if costs[best] <= SINGLE_INDEX_SLACK * unrestricted + 1:
                chosen[rel] = best
        for rel, cols_ in chosen.items():
            relation = self.relations[rel]
            old = relation.primary
            relation.set_primary(cols_)
            self.primaries[rel] = cols_
            if old is not None and old != cols_:
                del relation.indexes[old]  # no compiled plan reads it (the relation was free)
        return plan_all(chosen) if chosen else plans

    def checker(self, name: str) -> Callable[[Any], bool | None] | None:
        """``fn(values)``: whether relation ``name`` holds the tuple of Python ``values``.

        The fast path of ``Engine.contains``: compiled once per relation, it encodes the values
        (known strings and entities only) and runs, on demand, every rule's plan with all
        columns bound, with views resolved once. It returns ``None`` when the values need the
        general path (an unknown or unhashable value, a plain tuple, a wrong length).
        ``None`` for an unknown relation.
        """
        found = self.checkers.get(name)
        if found is not None:
            return found
        namespace: dict[str, Any] = {"IDS": self.dictionary.id_of}
        if name in self.on_demand:
            arity = self.analysis.relations[name].arity
            self.demand(name, ALL_COLUMNS[arity], None, exists=True, run=False)
            calls = []
            for i, (fn, views) in enumerate(self._demand_plans[(name, ALL_COLUMNS[arity], True)]):
                namespace[f"p{i}"] = fn
                namespace.update({f"v{i}_{j}": view for j, view in enumerate(views)})
                args = "".join(f", v{i}_{j}" for j in range(len(views)))
                calls.append(f"p{i}(None, None, row{args})")
            test = " or ".join(calls) or "False"
        elif name in self.relations:
            rel = self.relations[name]
            arity = rel.arity
            namespace["REL"] = rel
            test = "row in REL"
        else:
            return None
        a = [f"a{j}" for j in range(arity)]
        x = [f"x{j}" for j in range(arity)]
        unpack = "".join(f"{v}, " for v in a) + "= values" if arity else "() = values"
        known = " or ".join(f"{v} is None" for v in x) or "False"
        plain = " or ".join(f"type({v}) is tuple" for v in a) or "False"
        src = f"""
def check(values):
    if values.__class__ is not tuple and values.__class__ is not list:
        return None
    try:
        {unpack}
        {"; ".join(f"{xv} = IDS({av})" for xv, av in zip(x, a, strict=True)) or "pass"}
    except (TypeError, ValueError):
        return None
    if {known} or {plain}:
        return None
    row = ({"".join(f"{v}, " for v in x)})
    return bool({test})
"""
        check: Callable[[Any], bool | None] = define(src, "check", f"check {name}", namespace)
        self.checkers[name] = check
        return check
