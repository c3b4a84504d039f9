"""The net change of a relation during an update, and views of the relation before it.

During an update, plans sometimes need a relation *as it was before* the update. Rather than
copying, :class:`Delta` records the rows added and removed and the ``Old*View`` classes answer
lookups on the old version from the new one plus the delta.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rune.ivm.index import EMPTY, Index, Row

if TYPE_CHECKING:
    from rune.ivm.store import Relation

__all__ = ["Delta", "OldIndexView", "OldRowsView"]


class Delta:
    """Net change of one relation during an update: rows added and rows removed."""

    __slots__ = ("_maps", "_signed", "minus", "plus")

    def __init__(self, plus: set[Row] | None = None, minus: set[Row] | None = None) -> None:
        self.plus: set[Row] = plus if plus is not None else set()
        self.minus: set[Row] = minus if minus is not None else set()
        self._maps: dict[tuple[tuple[int, ...], bool], dict[Any, Any]] = {}
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

    def grouped(self, index: Index, added: bool) -> dict[Any, Any]:
        """Items of the added (a set per key) or removed (a list per key) rows, by key."""
        found = self._maps.get((index.cols, added))
        if found is None:
            key, item = index.ops.key, index.ops.item
            found = {}
            if added:
                for row in self.plus:
                    found.setdefault(key(row), set()).add(item(row))
            else:
                for row in self.minus:
                    found.setdefault(key(row), []).append(item(row))
            self._maps[(index.cols, added)] = found
        return found


class OldIndexView:
    """``.get(key)`` of an index as it was before ``delta`` (plans only call ``get``)."""

    __slots__ = ("added", "gone", "map")

    def __init__(self, index: Index, delta: Delta) -> None:
        self.map = index.map
        self.added = delta.grouped(index, True)
        self.gone = delta.grouped(index, False)

    def get(self, key: Any, default: Any = EMPTY) -> Iterable[Any]:
        current = self.map.get(key)
        gone = self.gone.get(key)
        added = self.added.get(key)
        if added is None:
            if gone is None:
                return current if current is not None else default
            return gone if current is None else [*current, *gone]
        kept = [x for x in current if x not in added] if current is not None else []
        if gone:
            kept.extend(gone)
        return kept


class OldRowsView:
    """Membership and iteration of a relation as it was before ``delta``."""

    __slots__ = ("minus", "plus", "rel")

    def __init__(self, relation: Relation, delta: Delta) -> None:
        self.rel = relation
        self.plus = delta.plus
        self.minus = delta.minus

    def __contains__(self, row: object) -> bool:
        return (row in self.rel and row not in self.plus) or row in self.minus

    def __iter__(self) -> Iterator[Row]:
        plus = self.plus
        for row in self.rel:
            if row not in plus:
                yield row
        yield from self.minus
