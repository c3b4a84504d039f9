"""Transitive closures evaluated set at a time, the bulk path of recursive strata like
``in_group(U, G) :- member(U, G). in_group(U, G) :- in_group(U, S), subgroup(S, G).``

:meth:`Closure.detect` recognises such a stratum from its rules; :func:`evaluate_closure`
computes it from the seed rows by C-level set unions and fills the relation's index maps
directly, declining (``False``) when the memoized sets would grow too large, in which case
the caller evaluates the stratum by semi-naive rounds as any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

from rune.ivm.analysis import Stratum
from rune.ivm.index import GROUP_LIMIT, Row, singleton_or_list
from rune.ivm.store import Relation, drain
from rune.ivm.syntax import Atom, Rule, Var, literal_relation

__all__ = ["CLOSURE_MEMO", "Closure", "evaluate_closure"]


CLOSURE_MEMO = 16
"""The closure path gives up (for semi-naive evaluation) once the memoized reachable sets
hold more than this many ids per seed row (see :func:`evaluate_closure`)."""


_NO_IDS: frozenset[int] = frozenset()


class Closure:
    """A stratum computing a transitive closure: one binary relation ``p`` whose recursive
    rules are all ``p(X, Z) :- p(X, Y), e(Y, Z)`` up to argument order, ``e`` of a lower
    stratum: ``X`` is carried from the body's ``p`` to the head at column ``carried``.

    ``edges`` lists, per recursive rule, ``e`` and the column of ``Y`` in ``e``.
    """

    __slots__ = ("carried", "copies", "edges", "relation")

    def __init__(
        self,
        relation: str,
        carried: int,
        edges: list[tuple[str, int]],
        copies: dict[Rule, tuple[str, int]],
    ) -> None:
        self.relation = relation
        self.carried = carried
        self.edges = edges
        self.copies = copies
        """Seed rules copying a lower binary relation (``p(X, Y) :- s(X, Y)`` or
        ``p(X, Y) :- s(Y, X)``): the relation and its column that lands in the carried one.
        Their rows are read from that relation's indexes instead of being derived."""

    @classmethod
    def detect(cls, stratum: Stratum) -> Closure | None:
        if not stratum.recursive or len(stratum.relations) != 1:
            return None
        (name,) = stratum.relations
        carried: set[int] = set()
        edges: list[tuple[str, int]] = []
        seeds: list[Rule] = []
        for rule in stratum.rules:
            if not any(literal_relation(lit) == name for lit in rule.body):
                seeds.append(rule)  # a seed rule: evaluated by its full plan (or copied)
                continue
            if len(rule.body) != 2 or not all(isinstance(lit, Atom) for lit in rule.body):
                return None
            own, lower = sorted(rule.body, key=lambda a: a.relation != name)  # type: ignore[union-attr]
            assert isinstance(own, Atom) and isinstance(lower, Atom)
            if own.relation != name or lower.relation == name:
                return None
            head = rule.head.args
            terms = (*head, *own.args, *lower.args)
            if len(terms) != 6 or not all(isinstance(t, Var) and not t.anonymous for t in terms):
                return None
            for c in (0, 1):
                x, y, z = own.args[c], own.args[1 - c], head[1 - c]
                if head[c] != x or len({x, y, z}) != 3 or set(lower.args) != {y, z}:
                    continue
                carried.add(c)
                edges.append((lower.relation, lower.args.index(y)))
                break
            else:
                return None
        if len(carried) != 1:
            return None
        c = carried.pop()
        copies: dict[Rule, tuple[str, int]] = {}
        for rule in seeds:
            (lit,) = rule.body if len(rule.body) == 1 else (None,)
            head = rule.head.args
            if (
                isinstance(lit, Atom)
                and len(lit.args) == 2
                and all(isinstance(t, Var) and not t.anonymous for t in (*head, *lit.args))
                and head[0] != head[1]
                and set(head) == set(lit.args)
            ):
                copies[rule] = (lit.relation, lit.args.index(head[c]))
        return cls(name, c, edges, copies)


def evaluate_closure(
    closure: Closure, relations: dict[str, Relation], seeds: dict[str, set[Row]], cooperative: bool
) -> bool:
    """Evaluate a transitive-closure stratum (:class:`Closure`) set at a time.

    ``p(x, z)`` holds iff some seed ``p(x, y)`` (a row the non-recursive rules derived)
    reaches ``z`` along the edges. So: the set ``R(y)`` of ids reachable from each distinct
    seed ``y`` (itself included), by breadth-first C-level set unions over the edges
    grouped by source; ``p``'s rows for ``x`` are the union of ``R(y)`` over its seeds,
    and for ``z`` (when ``p`` has an index on that column) the union of the seeds' ``x``
    over the ``y`` reaching ``z``. The relation's index maps are filled with these
    groups directly: no row tuple is built. Returns ``False`` (nothing done) when the
    memoized sets would grow past :data:`CLOSURE_MEMO` ids per seed row (a dense graph
    whose reachable sets are large but shared by few seeds); the caller then runs the
    semi-naive rounds.
    """
    rows = seeds[closure.relation]
    succ = _successors(closure, relations)
    by_x, by_y, n_seeds = _seeds(closure, relations, rows)
    reach = _reachable(by_y, succ, CLOSURE_MEMO * n_seeds + 4096)
    if reach is None:
        return False
    _fill(relations[closure.relation], closure.carried, by_x, by_y, reach)
    if cooperative:
        drain(rows)
    return True


def _successors(closure: Closure, relations: dict[str, Relation]) -> dict[int, set[int]]:
    """The edges grouped by source: ``y -> {z}`` over every edge relation."""
    succ: dict[int, set[int]] = {}
    for name, j in closure.edges:
        idx = relations[name].indexes.get((j,))
        if idx is not None and idx.arity == 2:
            for y, group in idx.map.items():
                found = succ.get(y)
                if found is None:
                    succ[y] = set(group)
                else:
                    found.update(group)
        else:
            for row in relations[name]:
                succ.setdefault(row[j], set()).add(row[1 - j])
    return succ


def _seeds(
    closure: Closure, relations: dict[str, Relation], rows: set[Row]
) -> tuple[dict[int, Any], dict[int, Any], int]:
    """The seeds by ``x`` and by ``y``, and their number: the index maps of a copied relation
    when it is the only source of seeds (read, never changed), else sets built from the rows."""
    c = closure.carried
    copied = [(relations[n], xcol) for n, xcol in closure.copies.values()]
    copied = [(source, xcol) for source, xcol in copied if source]
    by_x: dict[int, Any] = {}
    by_y: dict[int, Any] = {}
    if not rows and len(copied) == 1 and copied[0][0].arity == 2:
        source, xcol = copied[0]
        ix, iy = source.indexes.get((xcol,)), source.indexes.get((1 - xcol,))
        if ix is not None:
            by_x = ix.map
        if iy is not None:
            by_y = iy.map
        if ix is None or iy is None:
            have, build = (ix, by_y) if ix is not None else (iy, by_x)
            assert have is not None
            for a, group in have.map.items():
                for b in group:
                    found_list = build.get(b)
                    if found_list is None:
                        build[b] = [a]
                    else:
                        found_list.append(a)
        return by_x, by_y, len(source)
    pairs: list[Iterable[tuple[int, int]]] = [map(itemgetter(c, 1 - c), rows)]
    for source, xcol in copied:
        pairs.append(map(itemgetter(xcol, 1 - xcol), source))
    n_seeds = 0
    for x, y in chain.from_iterable(pairs):
        n_seeds += 1
        found = by_x.get(x)
        if found is None:
            by_x[x] = {y}
        else:
            found.add(y)
        found = by_y.get(y)
        if found is None:
            by_y[y] = {x}
        else:
            found.add(x)
    return by_x, by_y, n_seeds


def _reachable(
    by_y: dict[int, Any], succ: dict[int, set[int]], budget: int
) -> dict[int, set[int]] | None:
    """``R(y)`` for each seed ``y`` (itself included); ``None`` once the sets hold more
    than ``budget`` ids in all."""
    union = set().union
    get = succ.get
    reach: dict[int, set[int]] = {}
    for y in by_y:
        known = {y}
        frontier: set[int] = known
        while frontier:
            frontier = union(*map(get, frontier, repeat(_NO_IDS)))
            frontier -= known
            known |= frontier
        reach[y] = known
        budget -= len(known)
        if budget < 0:
            return None
    return reach


def _fill(
    rel: Relation,
    c: int,
    by_x: dict[int, Any],
    by_y: dict[int, Any],
    reach: dict[int, set[int]],
) -> None:
    """Fill the closure relation's index maps (on the carried column and, if it has one, on
    the other) with its groups, and record its size."""
    union = set().union
    limit = GROUP_LIMIT
    maps: dict[int, dict[Any, Any]] = {}
    for cols, idx in rel.indexes.items():
        maps[cols[0]] = idx.map
    size = 0
    reach_of = reach.__getitem__
    carried_map = maps.get(c)
    groups: dict[int, Any] = {}
    for x, ys in by_x.items():
        g = union(*map(reach_of, ys))
        size += len(g)
        groups[x] = singleton_or_list(g) if len(g) <= limit else g
    if carried_map is not None:
        carried_map.update(groups)
    other = maps.get(1 - c)
    if other is not None:
        reached_by: dict[int, list[int]] = {}
        for y, zs in reach.items():
            for z in zs:
                found_list = reached_by.get(z)
                if found_list is None:
                    reached_by[z] = [y]
                else:
                    found_list.append(y)
        xs_of = by_y.__getitem__
        inverse: dict[int, Any] = {}
        for z, ys_ in reached_by.items():
            g = union(*map(xs_of, ys_))
            inverse[z] = singleton_or_list(g) if len(g) <= limit else g
        other.update(inverse)
    rel.loaded(size)
