"""Storage of encoded tuples: relations, snapshots and copies of their rows.

A :class:`Relation` holds tuples of integer ids. Its indexes (:mod:`rune.ivm.index`,
differential dataflow's *arrangements*) group the rows by the values of some columns; each
(relation, columns) index is built once, shared by every plan that probes it, and kept up to
date by :meth:`Relation.insert` / :meth:`Relation.remove`.

Layout (docs/design.md §6 memory target): a relation of arity 2 or more keeps **no set of rows**.
Every index holds all rows, so one of them, the *primary* index, is the storage: membership
and iteration go through it. An index does not store row tuples either, only the *items* of
the rows grouped by key (see :mod:`rune.ivm.index`). Relations of arity 0 and 1 are a set of
row tuples.

During an update, plans sometimes need a relation *as it was before* the update: a
:class:`Delta` and the ``Old*View`` classes (:mod:`rune.ivm.delta`) answer from the new
version plus the change.

Pitfall: never insert into or remove from a relation while a plan iterates one of its indexes
(a set group changed during iteration raises); plans write into a separate output and the
caller applies it afterwards.
"""

from __future__ import annotations

import weakref
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice, repeat
from operator import itemgetter
from typing import Any

from rune.ivm.index import (
    GROUP_LIMIT,
    KEY_BITS,
    KEY_MASK,
    Index,
    Row,
    builder,
    singleton_or_list,
    unpack,
)

__all__ = [
    "COMPACT_ROWS",
    "EMPTY_MAP",
    "EMPTY_ROWS",
    "Relation",
    "RowsCopy",
    "Snapshot",
    "drain",
]

EMPTY_MAP: dict[Any, Any] = {}
EMPTY_ROWS: frozenset[Row] = frozenset()

BULK_ROWS = 256
"""Inserting more rows than this into an empty relation builds its indexes in one pass."""

COMPACT_ROWS = 4096
"""Relations that never held this many rows are not compacted (see ``Relation.compact``)."""


DRAIN_MIN = 65_536
"""Containers of fewer items are freed at once by :func:`drain` (see there)."""


def drain(container: set[Any] | dict[Any, Any] | list[Any]) -> None:
    """Empty a large container item by item, in a Python loop.

    Freeing a set of a million rows is one C-level pass that holds the GIL throughout
    (hundreds of milliseconds: every row tuple is deallocated); a Python loop lets other
    threads run every few milliseconds. Slower (a loop iteration per item): only for work
    done off the owner thread (``Engine.from_snapshot``).
    """
    if len(container) < DRAIN_MIN:
        return
    pop = container.popitem if isinstance(container, dict) else container.pop
    for _ in range(len(container)):
        pop()


class Relation:
    """A stored relation (see the module docstring for the layout).

    ``counted`` relations (non-recursive derived strata) know each row's number of
    derivations: ``counts`` holds the rows derived more than once; every other stored row has
    one derivation.
    """

    __slots__ = (
        "_peak",
        "_rows",
        "_size",
        "_snapshots",
        "arity",
        "counted",
        "counts",
        "indexes",
        "name",
        "primary",
    )

    def __init__(
        self,
        name: str,
        arity: int,
        counted: bool = False,
        primary: tuple[int, ...] | None = None,
    ) -> None:
        self.name = name
        self.arity = arity
        self.counted = counted
        self.counts: dict[Row, int] = {}
        self.indexes: dict[tuple[int, ...], Index] = {}
        self._size = 0
        self._peak = 0  # most rows held since the containers were last compacted
        self._snapshots: list[weakref.ref[Snapshot]] = []
        if arity >= 2:
            self.primary: tuple[int, ...] | None = primary or (0,)
            self._rows: set[Row] | None = None
            self.indexes[self.primary] = Index(arity, self.primary, (), GROUP_LIMIT)
        else:
            self.primary = None
            self._rows = set()

    def __len__(self) -> int:
        rows = self._rows
        return self._size if rows is None else len(rows)

    def __contains__(self, row: object) -> bool:
        rows = self._rows
        if rows is not None:
            return row in rows
        assert self.primary is not None
        idx = self.indexes[self.primary]
        return idx.ops.contains(idx.map, row)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Row]:
        rows = self._rows
        if rows is not None:
            return iter(rows)
        assert self.primary is not None
        idx = self.indexes[self.primary]
        return idx.ops.rows(idx.map)

    def scan(self) -> Iterable[Row]:
        """What a plan reads to iterate (arity <= 1: also to test membership)."""
        return self._rows if self._rows is not None else self

    def present(self, rows: Iterable[Row]) -> set[Row]:
        """Those of ``rows`` that are stored."""
        if self._rows is not None:
            return self._rows.intersection(rows)
        assert self.primary is not None
        idx = self.indexes[self.primary]
        return idx.ops.present(idx.map, rows)

    def absent(self, rows: Iterable[Row]) -> set[Row]:
        """Those of ``rows`` that are not stored."""
        if self._rows is not None:
            return set(rows).difference(self._rows)
        if not self._size:
            return set(rows)
        assert self.primary is not None
        idx = self.indexes[self.primary]
        return idx.ops.absent(idx.map, rows)

    def distinct(self, col: int) -> int:
        """Number of distinct ids in column ``col`` (one pass over an index)."""
        if self._rows is not None:
            return len({row[col] for row in self._rows})
        idx = self.indexes.get((col,))
        if idx is not None:
            return len(idx.map)
        assert self.primary is not None
        idx = self.indexes[self.primary]
        cols = idx.cols
        if col in cols:
            shift = KEY_BITS * (len(cols) - 1 - cols.index(col))
            return len({k >> shift & KEY_MASK for k in idx.map})
        rest = [p for p in range(self.arity) if p not in cols]
        items: Iterator[Any] = chain.from_iterable(idx.map.values())
        if len(rest) > 1:
            items = map(itemgetter(rest.index(col)), items)
        seen: set[Any] = set()
        add = seen.update
        for part in iter(lambda: list(islice(items, DRAIN_MIN)), []):
            add(part)  # by parts: other threads run between them (one part: ~10 ms)
        return len(seen)

    def count(self, row: Row) -> int:
        """Number of derivations of ``row`` (counted relations; 0 if absent)."""
        n = self.counts.get(row)
        if n is not None:
            return n
        return 1 if row in self else 0

    def index(self, cols: tuple[int, ...]) -> Index:
        """The index on ``cols``, built on first use and maintained from then on."""
        idx = self.indexes.get(cols)
        if idx is None:
            idx = self.indexes[cols] = Index(self.arity, cols, self, GROUP_LIMIT)
        return idx

    def set_primary(self, cols: tuple[int, ...] | None) -> None:
        """Make the index on ``cols`` the storage (arity >= 2), building it if needed."""
        if self._rows is not None or cols is None or cols == self.primary:
            return
        self.index(cols)
        self.primary = cols

    def insert(self, rows: Iterable[Row]) -> None:
        """Add rows that are not present (counted relations: with one derivation)."""
        if not rows:
            return
        if self._snapshots:
            self._freeze_snapshots()
        if self._rows is not None:
            self._rows.update(rows)
            return
        if not isinstance(rows, (list, tuple, set, frozenset, dict, Snapshot)):
            rows = list(rows)
        if not self._size and len(rows) > BULK_ROWS:  # a bulk load: every index at once
            if self._insert_functional(rows):
                return
            indexes = list(self.indexes.values())
            builder(self.arity, tuple(i.cols for i in indexes), GROUP_LIMIT)(
                [i.map for i in indexes], rows
            )
            self._size = len(rows)
            return
        self._size += len(rows)
        for idx in self.indexes.values():
            idx.ops.add(idx.map, rows)

    def _insert_functional(self, rows: Any) -> bool:
        """Bulk-insert the rows of an empty binary relation with one index whose key column
        holds a different id in every row (one folder per document, one parent per folder),
        in C-level passes: every group is a 1-tuple (``zip`` of the other column makes
        them). ``False`` (nothing done) otherwise; a sample of the rows rules most other
        relations out before any full pass."""
        if self.arity != 2 or len(self.indexes) != 1:
            return False
        (idx,) = self.indexes.values()
        key, other = itemgetter(idx.cols[0]), itemgetter(1 - idx.cols[0])
        sample = list(map(key, islice(rows, 1024)))
        if len(set(sample)) != len(sample):
            return False
        table = rows if isinstance(rows, (list, tuple)) else list(rows)
        groups = dict(zip(map(key, table), zip(map(other, table)), strict=True))
        if len(groups) != len(table):
            return False
        idx.map.update(groups)
        self._size = len(table)
        return True

    def loaded(self, size: int) -> None:
        """Account for ``size`` rows put into the (empty) index maps directly, all of them
        grouped consistently (``closure.evaluate_closure``)."""
        if self._snapshots:
            self._freeze_snapshots()
        self._size = size

    def snapshot(self) -> Snapshot:
        """The rows stored now, unaffected by later changes (see :class:`Snapshot`)."""
        if self._rows is not None:
            snap = Snapshot(self._rows, iter, len(self._rows), self.arity)
        else:
            assert self.primary is not None
            idx = self.indexes[self.primary]
            snap = Snapshot(idx.map, idx.ops.rows, self._size, self.arity)
        self._snapshots.append(weakref.ref(snap))
        return snap

    def copy(self) -> RowsCopy:
        """The rows stored now, copied into flat arrays of ids (C-level passes; no row built).

        Unlike :meth:`snapshot`, the copy shares no mutable object with the relation: it may
        be read in another thread while the relation changes. Arrays hold no Python object,
        so the garbage collector never traverses them (a list of a million ids costs a
        collection tens of milliseconds, every time it looks at it while it is young).
        """
        rows = self._rows
        if rows is not None:
            if self.arity == 0:
                return RowsCopy(0, (), array("L"), None, array("L", [len(rows)]))
            return RowsCopy(1, (), array("L", chain.from_iterable(rows)), None, array("L"))
        assert self.primary is not None
        idx = self.indexes[self.primary]
        m = idx.map
        groups = m.values()
        items = chain.from_iterable(groups)
        if self.arity - len(idx.cols) > 1:  # items are tuples of ids
            items = chain.from_iterable(items)
        n = len(idx.cols)
        keys: array[int] | list[int] = (
            array("L" if n == 1 else "Q", m.keys()) if n <= 2 else list(m.keys())
        )
        return RowsCopy(self.arity, idx.cols, array("L", items), keys, array("L", map(len, groups)))

    def discard(self) -> None:
        """Drop every row now (the relation is no longer used); snapshots still held keep
        the rows they stand for."""
        if self._snapshots:
            self._freeze_snapshots()
        self.indexes.clear()
        self.counts.clear()
        if self._rows is not None:
            self._rows = set()
        self._size = 0

    def _freeze_snapshots(self) -> None:
        """Before a change: snapshots still held copy the rows they stand for."""
        for ref in self._snapshots:
            snap = ref()
            if snap is not None:
                snap.freeze()
        self._snapshots.clear()

    def insert_new(self, rows: Iterable[Row]) -> list[Row] | set[Row]:
        """Add those of ``rows`` (distinct) that are not present; return them."""
        if self._snapshots:
            self._freeze_snapshots()
        stored = self._rows
        if stored is not None:
            new = set(rows).difference(stored)
            stored.update(new)
            return new
        assert self.primary is not None
        primary = self.indexes[self.primary]
        added = primary.ops.add_new(primary.map, rows)
        self._size += len(added)
        for idx in self.indexes.values():
            if idx is not primary:
                idx.ops.add(idx.map, added)
        return added

    def remove(self, rows: Iterable[Row]) -> None:
        """Remove rows that are present (and forget their counts).

        Once the relation holds less than a quarter of the most rows it held (and that was
        at least :data:`COMPACT_ROWS`), its containers are compacted (:meth:`compact`).
        """
        if not rows:
            return
        if self._snapshots:
            self._freeze_snapshots()
        if not isinstance(rows, (list, tuple, set, frozenset, dict)):
            rows = list(rows)
        if self.counts:
            pop = self.counts.pop
            for row in rows:
                pop(row, None)
        stored = self._rows
        if stored is not None:
            size = len(stored)
            stored.difference_update(rows)
            left = len(stored)
        else:
            size = self._size
            left = self._size = size - len(rows)
            for idx in self.indexes.values():
                idx.ops.remove(idx.map, rows)
        if size > self._peak:  # sizes only grow between removals: the most since the last
            self._peak = size
        if left * 4 < self._peak and self._peak >= COMPACT_ROWS:
            self.compact()

    def compact(self) -> None:
        """Rebuild the containers in place (same objects) at the size of what they hold.

        Dicts and sets never shrink when entries are removed, only when entries are added
        past their capacity; a relation emptied by retractions would otherwise keep the
        memory of its largest size. Set groups are rebuilt too (lists when small again).
        One pass over the rows; :meth:`remove` calls it after a quarter of the peak is left.
        """
        rows = self._rows
        if rows is not None:
            live = rows.copy()
            rows.clear()
            rows.update(live)
        for idx in self.indexes.values():
            m = idx.map
            groups = dict(m)
            for k, g in groups.items():
                if g.__class__ is set:
                    groups[k] = singleton_or_list(g) if len(g) <= idx.limit else set(g)
            m.clear()
            m.update(groups)
        if self.counts:
            counts = self.counts.copy()
            self.counts.clear()
            self.counts.update(counts)
        self._peak = len(self)

    def clear(self) -> None:
        if self._snapshots:
            self._freeze_snapshots()
        self.counts.clear()
        self._size = 0
        if self._rows is not None:
            self._rows.clear()
        for idx in self.indexes.values():
            idx.map.clear()


class Snapshot:
    """Rows of a relation at one moment (:meth:`Relation.snapshot`), built when iterated.

    ``data`` is the relation's own row set or primary index map, and ``rows(data)`` iterates
    full rows, until the relation next changes: just before, the relation makes every
    snapshot still held copy its groups (:meth:`freeze`). A bulk load's changes thus cost
    nothing unless read after a later update, and then one copy of the ids.
    """

    __slots__ = ("__weakref__", "_data", "_len", "_rows", "arity")

    def __init__(
        self, data: Any, rows: Callable[[Any], Iterator[Row]], size: int, arity: int
    ) -> None:
        self._data = data
        self._rows = rows
        self._len = size
        self.arity = arity

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Row]:
        return self._rows(self._data)

    def freeze(self) -> None:
        data = self._data
        if isinstance(data, (set, frozenset)):
            self._data = frozenset(data)
        else:
            self._data = dict(zip(data.keys(), map(tuple, data.values()), strict=True))


class RowsCopy:
    """Rows of a relation copied by :meth:`Relation.copy`: immutable ids in flat arrays.

    With key columns ``cols``: ``keys`` the index keys (packed as :func:`pack` does),
    ``sizes`` how many items each key's group had, ``items`` the ids of all the items, group
    after group. Without (arity 0 and 1): ``items`` the ids of the rows (``sizes[0]`` the
    number of rows of arity 0).
    """

    __slots__ = ("arity", "cols", "items", "keys", "sizes")

    def __init__(
        self,
        arity: int,
        cols: tuple[int, ...],
        items: array[int],
        keys: array[int] | list[int] | None,
        sizes: array[int],
    ) -> None:
        self.arity = arity
        self.cols = cols
        self.items = items
        self.keys = keys
        self.sizes = sizes

    def __len__(self) -> int:
        if self.arity == 0:
            return self.sizes[0] if self.sizes else 0
        return len(self.items) // (self.arity - len(self.cols))

    def rows(self, ids: Callable[[int], int]) -> Snapshot:
        """The rows (built as iterated), each id ``i`` replaced by ``ids(i)`` (the canonical
        int objects of the dictionary the rows are for)."""
        return Snapshot(ids, self._rows, len(self), self.arity)

    def _rows(self, ids: Callable[[int], int]) -> Iterator[Row]:
        arity, cols = self.arity, self.cols
        if arity == 0:
            return iter([()] * len(self))
        if not self.items:
            return iter(())
        if not cols:
            return zip(map(ids, self.items))
        width = arity - len(cols)
        rest = [p for p in range(arity) if p not in cols]
        columns: dict[int, Iterable[int]] = {
            p: map(ids, self.items[j::width]) for j, p in enumerate(rest)
        }
        assert self.keys is not None
        if len(cols) == 1:
            key_columns: list[Iterable[int]] = [map(ids, self.keys)]
        else:
            unpacked = (unpack(k, len(cols)) for k in self.keys)
            key_columns = [map(ids, c) for c in zip(*unpacked, strict=True)]
        for p, column in zip(cols, key_columns, strict=True):
            columns[p] = chain.from_iterable(map(repeat, column, self.sizes))
        return zip(*(columns[p] for p in range(arity)), strict=True)
