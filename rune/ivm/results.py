"""What the engine hands out about relations: :class:`Change` and :class:`RelationInfo`.

A :class:`Change` keeps the encoded rows of a relation's net change and decodes them on first
access, through the :class:`~rune.ivm.values.Era` it was made in (ids may be reused since).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rune.ivm.index import Row
from rune.ivm.values import Era, Value

__all__ = ["Change", "RelationInfo", "decode_rows", "encoded_change"]


def decode_rows(rows: Iterable[Row], values: list[Value]) -> frozenset[tuple[Value, ...]]:
    """Value tuples of encoded rows (``values`` is the dictionary's id -> value list)."""
    return frozenset(tuple([values[i] for i in row]) for row in rows)


class Change:
    """Exact net change of one relation: rows that appeared and rows that disappeared.

    ``added`` and ``removed`` are frozensets of value tuples, decoded on first access (a bulk
    load changes millions of rows that most callers never look at). Decoding reads the ids as
    they stood when the change was made, whatever updates ran since (ids of values no fact
    holds any more are reused; the change's :class:`~rune.ivm.values.Era` keeps what they
    meant). Pitfall: an undecoded change held across many updates keeps the values freed
    since (bounded, see ``values.ERA_KEEP``); read or drop changes promptly.
    """

    __slots__ = ("_added", "_era", "_minus", "_plus", "_removed")

    def __init__(
        self,
        added: frozenset[tuple[Value, ...]] = frozenset(),
        removed: frozenset[tuple[Value, ...]] = frozenset(),
    ) -> None:
        self._added: frozenset[tuple[Value, ...]] | None = frozenset(added)
        self._removed: frozenset[tuple[Value, ...]] | None = frozenset(removed)
        self._plus: Iterable[Row] = ()
        self._minus: Iterable[Row] = ()
        self._era: Era | None = None

    @classmethod
    def _encoded(cls, plus: Iterable[Row], minus: Iterable[Row], era: Era) -> Change:
        change = cls()
        change._added = change._removed = None
        change._plus, change._minus, change._era = plus, minus, era
        return change

    def _decode(self, rows: Iterable[Row]) -> frozenset[tuple[Value, ...]]:
        era = self._era
        assert era is not None
        if era.next is None:  # no id freed since this change was made
            return decode_rows(rows, era.values)
        decode = era.decoder()
        return frozenset(tuple(map(decode, row)) for row in rows)

    @property
    def added(self) -> frozenset[tuple[Value, ...]]:
        if self._added is None:
            self._added = self._decode(self._plus)
            self._plus = ()  # let go of the encoded rows (a relation snapshot, maybe)
            if self._removed is not None:
                self._era = None  # and of the era (the values it may keep)
        return self._added

    @property
    def removed(self) -> frozenset[tuple[Value, ...]]:
        if self._removed is None:
            self._removed = self._decode(self._minus)
            self._minus = ()
            if self._added is not None:
                self._era = None
        return self._removed

    def __len__(self) -> int:
        """Number of rows added plus removed (without decoding them)."""
        added = len(self._added) if self._added is not None else len(self._plus)  # type: ignore[arg-type]
        removed = len(self._removed) if self._removed is not None else len(self._minus)  # type: ignore[arg-type]
        return added + removed

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Change):
            return NotImplemented
        return self.added == other.added and self.removed == other.removed

    def __hash__(self) -> int:
        return hash((self.added, self.removed))

    def __repr__(self) -> str:
        return f"Change(added={set(self.added)!r}, removed={set(self.removed)!r})"


@dataclass(frozen=True, slots=True)
class RelationInfo:
    name: str
    arity: int
    kind: str  # "base" | "derived" | "on_demand"
    size: int | None  # None for on-demand relations (not stored)


def encoded_change(plus: Iterable[Row], minus: Iterable[Row], era: Era) -> Change:
    """A :class:`Change` of encoded rows (ids as ``era`` has them), decoded on first access."""
    return Change._encoded(plus, minus, era)  # noqa: SLF001 (its module's own constructor)
