"""The decision cache: bounded in entries and bytes, exact under view changes.

Keyed by everything a decision depends on besides the views (principal, action, resource,
canonical context). Exactness is by generation: :meth:`DecisionCache.invalidate` drops every
entry, and the authorizer calls it on any update that changed a relation or an entity and on
every bundle swap. An update that changes nothing (a fact asserted twice) keeps the cache.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["CacheStats", "DecisionCache"]

K = TypeVar("K")
V = TypeVar("V")

ENTRY_OVERHEAD: Final = 240
"""Approximate bytes of bookkeeping per entry (dict slot, key tuple, value tuple)."""


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int
    hits: int
    misses: int
    evictions: int
    invalidations: int
    generation: int

    def to_json(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "bytes": self.bytes,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "invalidations": self.invalidations,
            "generation": self.generation,
        }


class DecisionCache(Generic[K, V]):
    """An LRU map bounded by ``max_entries``, by approximate ``max_bytes`` and, when
    ``ttl_s`` > 0, by age (an entry older than ``ttl_s`` seconds is a miss)."""

    __slots__ = (
        "_bytes",
        "_data",
        "evictions",
        "generation",
        "hits",
        "invalidations",
        "max_bytes",
        "max_entries",
        "misses",
        "ttl_s",
    )

    def __init__(
        self, max_entries: int = 100_000, max_bytes: int = 64 * 1024 * 1024, ttl_s: float = 0.0
    ) -> None:
        if max_entries < 0 or max_bytes < 0 or ttl_s < 0:
            raise ValueError("cache bounds must be non-negative")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._data: OrderedDict[K, tuple[V, int, float]] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = self.evictions = self.invalidations = self.generation = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        if not self.max_entries:
            self.misses += 1
            return None
        item = self._data.get(key)
        if item is None:
            self.misses += 1
            return None
        if item[2] and item[2] < time.monotonic():
            del self._data[key]
            self._bytes -= item[1]
            self.misses += 1
            self.evictions += 1
            return None
        self.hits += 1
        self._data.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V, size: int) -> None:
        size += ENTRY_OVERHEAD
        if size > self.max_bytes or self.max_entries == 0:
            return
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._data[key] = (value, size, time.monotonic() + self.ttl_s if self.ttl_s else 0.0)
        self._bytes += size
        self._shrink()

    def _shrink(self) -> None:
        while len(self._data) > self.max_entries or self._bytes > self.max_bytes:
            _, (_, dropped, _) = self._data.popitem(last=False)
            self._bytes -= dropped
            self.evictions += 1

    def configure(self, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        """Change the bounds (a settings reload); entries over the new bounds are evicted,
        a new ``ttl_s`` applies to entries stored from now on."""
        if max_entries < 0 or max_bytes < 0 or ttl_s < 0:
            raise ValueError("cache bounds must be non-negative")
        self.max_entries, self.max_bytes, self.ttl_s = max_entries, max_bytes, ttl_s
        self._shrink()

    def invalidate(self) -> None:
        """Forget every entry (a view or the bundle changed)."""
        self.generation += 1
        if self._data:
            self._data = OrderedDict()
            self._bytes = 0
            self.invalidations += 1

    def stats(self) -> CacheStats:
        return CacheStats(
            len(self._data),
            self._bytes,
            self.hits,
            self.misses,
            self.evictions,
            self.invalidations,
            self.generation,
        )
