"""The slice of ``rune.ivm.Engine``'s API the decision layer uses (typed as a Protocol)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from rune.ivm.values import Value

__all__ = ["ChangeLike", "NetChange", "Views"]


class ChangeLike(Protocol):
    @property
    def added(self) -> frozenset[tuple[Value, ...]]: ...

    @property
    def removed(self) -> frozenset[tuple[Value, ...]]: ...

    def __len__(self) -> int:
        """Rows added plus removed (without decoding them)."""
        ...


class Views(Protocol):
    def update(
        self,
        insert: Mapping[str, Iterable[tuple[Value, ...]]] | None = ...,
        delete: Mapping[str, Iterable[tuple[Value, ...]]] | None = ...,
    ) -> Mapping[str, Any]: ...

    def replace(self, source: str) -> Mapping[str, Any]: ...

    def snapshot(self) -> Any:
        """An immutable copy of the facts another engine can be built from (any thread)."""
        ...

    def contains(self, relation: str, row: tuple[Value, ...]) -> bool: ...

    def lookup(
        self, relation: str, pattern: tuple[Value | None, ...]
    ) -> Iterator[tuple[Value, ...]]: ...

    def explain(self, relation: str, row: tuple[Value, ...]) -> Any: ...

    def arity(self, relation: str) -> int | None: ...

    def relations(self) -> Mapping[str, Any]: ...


class NetChange:
    """The net change of a relation over several consecutive changes (a row added then
    removed is no change)."""

    __slots__ = ("added", "removed")

    def __init__(self, changes: Iterable[ChangeLike]) -> None:
        added: set[tuple[Value, ...]] = set()
        removed: set[tuple[Value, ...]] = set()
        for ch in changes:
            for row in ch.removed:
                if row in added:
                    added.discard(row)
                else:
                    removed.add(row)
            for row in ch.added:
                if row in removed:
                    removed.discard(row)
                else:
                    added.add(row)
        self.added = frozenset(added)
        self.removed = frozenset(removed)

    def __len__(self) -> int:
        return len(self.added) + len(self.removed)
