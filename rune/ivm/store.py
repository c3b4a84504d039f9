"""Storage of encoded tuples: relations, their indexes, and old-version views.

A :class:`Relation` holds tuples of integer ids, either as a set or, for relations maintained
by counting, as a dict from tuple to its number of derivations. Indexes (differential
dataflow's *arrangements*) map the values of some columns to the tuples having them; each
(relation, columns) index is built once and shared by every plan that probes it, and is kept
up to date by :meth:`Relation.insert` / :meth:`Relation.remove`.

During an update, plans sometimes need a relation *as it was before* the update. Rather than
copying, :class:`Delta` records the tuples added and removed and the ``Old*View`` classes
answer lookups on the old version from the new one plus the delta.

Pitfall: never insert into or remove from a relation while a plan iterates one of its indexes;
plans write into a separate output dict and the caller applies it afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

__all__ = ["EMPTY", "Delta", "Index", "OldIndexView", "OldRowsView", "Relation", "Row"]

Row = tuple[int, ...]
EMPTY: tuple[Row, ...] = ()
EMPTY_MAP: dict[Any, Any] = {}
EMPTY_ROWS: frozenset[Row] = frozenset()


def key_function(cols: tuple[int, ...]) -> Callable[[Row], Any]:
    """Index key of a row: the column value for one column, a tuple for several."""
    if not cols:
        return lambda row: ()
    return itemgetter(*cols)


SMALL_GROUP = 8
"""Index groups up to this size are tuples (48-120 bytes) rather than sets (216+ bytes)."""


class Index:
    """Rows of one relation grouped by the values of ``cols``.

    ``map[key]`` is an iterable of rows: a tuple while the group is small, a set beyond
    :data:`SMALL_GROUP` rows. Most keys of an authorization workload (a document's folder, a
    user's groups) have few rows, and a tuple is a fraction of a set's size.
    """

    __slots__ = ("cols", "key", "map")

    def __init__(self, cols: tuple[int, ...], rows: Iterable[Row]) -> None:
        self.cols = cols
        self.key = key_function(cols)
        self.map: dict[Any, tuple[Row, ...] | set[Row]] = {}
        self.add_many(rows)

    def add_many(self, rows: Iterable[Row]) -> None:
        """Add rows that are not in the index yet."""
        key, groups = self.key, self.map
        for row in rows:
            k = key(row)
            group = groups.get(k)
            if group is None:
                groups[k] = (row,)
            elif type(group) is tuple:
                groups[k] = (*group, row) if len(group) < SMALL_GROUP else {*group, row}
            else:
                group.add(row)  # type: ignore[union-attr]

    def remove_many(self, rows: Iterable[Row]) -> None:
        """Remove rows that are in the index."""
        key, groups = self.key, self.map
        for row in rows:
            k = key(row)
            group = groups[k]
            if type(group) is tuple:
                if len(group) == 1:
                    del groups[k]
                else:
                    groups[k] = tuple([r for r in group if r != row])
            else:
                group.discard(row)  # type: ignore[union-attr]
                if not group:
                    del groups[k]


class Relation:
    """A stored relation. ``rows`` is a set, or a dict row -> count when ``counted``."""

    __slots__ = ("arity", "counted", "indexes", "name", "rows")

    def __init__(self, name: str, arity: int, counted: bool = False) -> None:
        self.name = name
        self.arity = arity
        self.counted = counted
        self.rows: set[Row] | dict[Row, int] = {} if counted else set()
        self.indexes: dict[tuple[int, ...], Index] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, row: object) -> bool:
        return row in self.rows

    def index(self, cols: tuple[int, ...]) -> Index:
        """The index on ``cols``, built on first use and maintained from then on."""
        idx = self.indexes.get(cols)
        if idx is None:
            idx = self.indexes[cols] = Index(cols, self.rows)
        return idx

    def insert(self, rows: Iterable[Row]) -> None:
        """Add rows that are not present (counted relations: with count 1)."""
        rows = list(rows)
        if self.counted:
            counts = self.rows
            assert isinstance(counts, dict)
            for row in rows:
                counts[row] = 1
        else:
            assert isinstance(self.rows, set)
            self.rows.update(rows)
        for idx in self.indexes.values():
            idx.add_many(rows)

    def remove(self, rows: Iterable[Row]) -> None:
        """Remove rows that are present."""
        rows = list(rows)
        if self.counted:
            counts = self.rows
            assert isinstance(counts, dict)
            for row in rows:
                del counts[row]
        else:
            assert isinstance(self.rows, set)
            self.rows.difference_update(rows)
        for idx in self.indexes.values():
            idx.remove_many(rows)

    def clear(self) -> None:
        self.rows.clear()
        for idx in self.indexes.values():
            idx.map.clear()


class Delta:
    """Net change of one relation during an update: rows added and rows removed."""

    __slots__ = ("_minus_maps", "_signed", "minus", "plus")

    def __init__(self, plus: set[Row] | None = None, minus: set[Row] | None = None) -> None:
        self.plus: set[Row] = plus if plus is not None else set()
        self.minus: set[Row] = minus if minus is not None else set()
        self._minus_maps: dict[tuple[int, ...], dict[Any, list[Row]]] = {}
        self._signed: dict[Row, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.plus or self.minus)

    def signed(self) -> dict[Row, int]:
        """Rows with weight +1 (added) or -1 (removed), as plans take their source."""
        if self._signed is None:
            signed = dict.fromkeys(self.plus, 1)
            signed.update(dict.fromkeys(self.minus, -1))
            self._signed = signed
        return self._signed

    def minus_map(self, cols: tuple[int, ...]) -> dict[Any, list[Row]]:
        found = self._minus_maps.get(cols)
        if found is None:
            key = key_function(cols)
            found = {}
            for row in self.minus:
                found.setdefault(key(row), []).append(row)
            self._minus_maps[cols] = found
        return found


class OldIndexView:
    """``.get(key)`` of an index as it was before ``delta`` (plans only call ``get``)."""

    __slots__ = ("gone", "map", "plus")

    def __init__(self, index: Index, delta: Delta) -> None:
        self.map = index.map
        self.plus = delta.plus
        self.gone = delta.minus_map(index.cols)

    def get(self, key: Any, default: Any = EMPTY) -> Iterable[Row]:
        current = self.map.get(key)
        gone = self.gone.get(key)
        if current is None:
            return gone if gone is not None else default
        plus = self.plus
        kept = [row for row in current if row not in plus] if plus else list(current)
        if gone:
            kept.extend(gone)
        return kept


class OldRowsView:
    """Membership and iteration of a relation as it was before ``delta``."""

    __slots__ = ("minus", "plus", "rows")

    def __init__(self, relation: Relation, delta: Delta) -> None:
        self.rows = relation.rows
        self.plus = delta.plus
        self.minus = delta.minus

    def __contains__(self, row: object) -> bool:
        return (row in self.rows and row not in self.plus) or row in self.minus

    def __iter__(self) -> Iterator[Row]:
        plus = self.plus
        for row in self.rows:
            if row not in plus:
                yield row
        yield from self.minus
