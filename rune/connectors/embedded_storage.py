"""The storage of :class:`~rune.connectors.embedded.EmbeddedLog`: per-topic retention
settings, and topics made of partitions made of segments (see that module for the
semantics: retention, compaction, offsets with holes). The log changes these structures;
they only read records and keep their own sums consistent.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Any

from rune.connectors.base import ConnectorError, Record

__all__ = [
    "RECORD_OVERHEAD",
    "Partition",
    "Retention",
    "Segment",
    "Topic",
    "record_offset",
    "record_size",
]

RECORD_OVERHEAD = 200
"""Bytes a stored record counts besides its key and value: about what its Python objects
cost (record tuple, two bytes headers, offset, list slot), measured with tracemalloc."""

record_offset = itemgetter(2)  # Record.offset, a key for bisecting records
_CONFIG_KEYS = {
    "retention.bytes": "retention_bytes",
    "retention.ms": "retention_ms",
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "min.cleanable.dirty.ratio": "min_cleanable_dirty_ratio",
}


@dataclass(frozen=True, slots=True)
class Retention:
    """What each partition keeps; ``-1`` means no bound. A topic's Kafka configs
    (``retention.bytes``, ``retention.ms``, ``segment.bytes``, ``segment.ms``,
    ``min.cleanable.dirty.ratio``) override these defaults for that topic. The defaults are
    those of the ``[embedded_log]`` settings section."""

    retention_bytes: int = 16 << 20
    retention_records: int = 100_000
    retention_ms: int = 3_600_000
    segment_bytes: int = 1 << 20
    segment_ms: int = 600_000
    min_cleanable_dirty_ratio: float = 0.5

    def unbounded(self) -> Retention:
        """These settings without retention bounds: every record stays (compaction still
        applies to compacted topics)."""
        return replace(self, retention_bytes=-1, retention_records=-1, retention_ms=-1)

    def with_configs(self, topic: str, configs: Mapping[str, str]) -> Retention:
        """These defaults overridden by the Kafka keys present in ``configs``."""
        changes: dict[str, Any] = {}
        for key, name in _CONFIG_KEYS.items():
            raw = configs.get(key)
            if raw is None:
                continue
            try:
                changes[name] = float(raw) if name == "min_cleanable_dirty_ratio" else int(raw)
            except ValueError:
                raise ConnectorError(f"{topic}: {key}={raw!r} is not a number") from None
        return replace(self, **changes)


def _policy(topic: str, configs: Mapping[str, str]) -> tuple[bool, bool]:
    """(compact, delete) of ``cleanup.policy``."""
    words = {w.strip() for w in configs.get("cleanup.policy", "delete").split(",")}
    if not words or not words <= {"compact", "delete"}:
        raise ConnectorError(f"{topic}: unknown cleanup.policy {configs['cleanup.policy']!r}")
    return "compact" in words, "delete" in words


def record_size(record: Record) -> int:
    """The bytes ``record`` counts: key and value plus :data:`RECORD_OVERHEAD`."""
    key, value = record.key, record.value
    return RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)


class Segment:
    """Records of offsets ``[base, next segment's base)``, in offset order. ``dense``: the
    record at index i has offset ``base + i`` (no holes)."""

    __slots__ = ("base", "dense", "first", "last", "records", "size")

    def __init__(
        self, base: int, records: list[Record], dense: bool, size: int, first: float, last: float
    ) -> None:
        self.base = base
        self.records = records
        self.dense = dense
        self.size = size
        self.first = first
        """When the first record was appended (``segment.ms`` rolls from it)."""
        self.last = last
        """When the last record was appended (``retention.ms`` counts from it)."""


class Partition:
    __slots__ = ("bases", "count", "dirty", "end", "segments", "size", "start")

    def __init__(self, now: float) -> None:
        self.segments = [Segment(0, [], True, 0, now, now)]
        self.bases = [0]
        """``segments[i].base``, for bisection."""
        self.start = 0
        self.end = 0
        self.count = 0
        self.size = 0
        self.dirty = 0
        """Bytes appended since the last compaction pass."""

    def read(self, pos: int, limit: int, out: list[Record]) -> int:
        """Append up to ``limit`` (> 0) stored records at or after ``pos`` to ``out``; return
        the next position (the end once no stored record is left)."""
        segments = self.segments
        si = bisect_right(self.bases, pos) - 1
        if si < 0:
            si = 0
        seg = segments[si]
        if seg.dense:
            ri = pos - seg.base if pos > seg.base else 0
        else:
            ri = bisect_left(seg.records, pos, key=record_offset)
        while True:
            records = seg.records
            if ri < len(records):
                chunk = records[ri : ri + limit]
                out.extend(chunk)
                limit -= len(chunk)
                if limit == 0:
                    return chunk[-1].offset + 1
            si += 1
            if si == len(segments):
                return self.end
            seg = segments[si]
            ri = 0

    def next_at(self, pos: int) -> int:
        """The position a reader at ``pos`` effectively has: at least the start, and the end
        when no stored record is left at or after it."""
        if pos >= self.end:
            return pos
        for seg in reversed(self.segments):
            if seg.records:
                return max(pos, self.start) if seg.records[-1].offset >= pos else self.end
        return self.end

    def replace(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.bases = [s.base for s in segments]
        self.start = segments[0].base
        self.count = sum(len(s.records) for s in segments)
        self.size = sum(s.size for s in segments)


class Topic:
    __slots__ = ("compact", "configs", "delete", "name", "partitions", "retention")

    def __init__(
        self,
        name: str,
        partitions: int,
        configs: Mapping[str, str],
        defaults: Retention,
        now: float,
    ) -> None:
        self.name = name
        self.configs = dict(configs)
        self.compact, self.delete = _policy(name, self.configs)
        self.retention = defaults.with_configs(name, self.configs)
        self.partitions = [Partition(now) for _ in range(max(1, partitions))]
