"""Which request offsets may be committed: never past a request not yet answered."""

from __future__ import annotations

from collections.abc import Iterable

from rune.connectors.base import TP

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Per partition: offsets fetched but not answered, and the next offset after the
    highest fetched. The committable offset is the lowest unanswered one, else that next one."""

    def __init__(self) -> None:
        self._pending: dict[TP, set[int]] = {}
        self._next: dict[TP, int] = {}
        self._committed: dict[TP, int] = {}

    def fetched(self, items: Iterable[tuple[TP, int]]) -> None:
        for tp, offset in items:
            self._pending.setdefault(tp, set()).add(offset)
            if offset + 1 > self._next.get(tp, -1):
                self._next[tp] = offset + 1

    def done(self, items: Iterable[tuple[TP, int]]) -> None:
        for tp, offset in items:
            self._pending.get(tp, set()).discard(offset)

    def forget(self, partitions: Iterable[TP]) -> None:
        """A rebalance took ``partitions`` away: their requests are the new owner's."""
        for tp in partitions:
            self._pending.pop(tp, None)
            self._next.pop(tp, None)
            self._committed.pop(tp, None)

    def owns(self, tp: TP) -> bool:
        return tp in self._next

    @property
    def in_flight(self) -> int:
        return sum(len(p) for p in self._pending.values())

    def committable(self, also_done: Iterable[tuple[TP, int]] = ()) -> dict[TP, int]:
        """Offsets to commit that moved since the last ``mark_committed``, counting the
        requests of ``also_done`` as answered (nothing is changed)."""
        extra: dict[TP, set[int]] = {}
        for tp, offset in also_done:
            extra.setdefault(tp, set()).add(offset)
        out: dict[TP, int] = {}
        for tp, nxt in self._next.items():
            pending = self._pending.get(tp)
            if pending and tp in extra:
                pending = pending - extra[tp]
            offset = min(pending) if pending else nxt
            if offset != self._committed.get(tp):
                out[tp] = offset
        return out

    def mark_committed(self, offsets: dict[TP, int]) -> None:
        self._committed.update((tp, off) for tp, off in offsets.items() if tp in self._next)
