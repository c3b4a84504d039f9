"""An in-process log with Kafka's semantics: partitions, offsets, keys, tombstones, groups,
retention and compaction.

Used by ``rune serve``/``rune run`` without Kafka and by unit tests. Records live in memory; a
produce is acknowledged when it returns. Records are placed by key as Kafka's default
partitioner does (murmur2 of the key modulo the partition count) or round-robin without a
key. A consumer group here has one member, which gets every partition of the topic.

Storage is Kafka's: a partition is a list of segments (rolled at ``segment.bytes`` or
``segment.ms``), it has a log-start offset, and offsets never change meaning: removed records
leave holes, ``end_offsets`` is the count of records ever appended, and a reader positioned
below the start continues at the start (Kafka's ``auto.offset.reset=earliest``).

- ``cleanup.policy=delete`` (the default): closed segments go, oldest first, while the
  partition would still hold ``retention.bytes`` (or ``retention_records``) without them, or
  once their last record is older than ``retention.ms`` -- but never a segment holding a
  record at or after the position of an open reader, or after the committed offset of a
  group with an open reader. The active segment always stays.
- ``cleanup.policy=compact``: below the *cleaner point* (the lowest position of any open
  reader, or the end when none is open) only the last record per key survives, and a
  tombstone that is a key's last record goes too (every open reader has read it). A reader
  opened later from the start reads exactly the current state. Records without a key (Kafka
  refuses them in compacted topics) are kept.

Both run on append, amortized: retention when a segment rolls, compaction once the bytes
appended since the last pass reach ``min.cleanable.dirty.ratio`` of the partition (and one
segment). Nothing runs while nothing is appended.

Pitfalls: retention protects only records a reader (or a group with an open reader) has not
consumed; records appended before any reader opens are bounded like any others (``FileLog``
input topics therefore keep everything). Sizes count key and value plus
:data:`RECORD_OVERHEAD`, so ``retention.bytes`` approximates memory, not Kafka's disk bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence

from rune.connectors.base import (
    TP,
    ConnectorError,
    NeverFails,
    Outgoing,
    Position,
    Reader,
    Record,
    TopicSpec,
)
from rune.connectors.embedded_storage import (
    RECORD_OVERHEAD,
    Partition,
    Retention,
    Segment,
    Topic,
    record_offset,
    record_size,
)
from rune.connectors.partitioner import default_partition

__all__ = ["RECORD_OVERHEAD", "EmbeddedLog", "EmbeddedReader", "Retention"]


class EmbeddedLog(NeverFails):
    """The in-process log. ``retention``: defaults for every topic (see :class:`Retention`);
    ``clock``: monotonic seconds, for ``segment.ms`` and ``retention.ms`` (tests pass their
    own)."""

    def __init__(
        self, retention: Retention | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._defaults = retention or Retention()
        self._clock = clock
        self._topics: dict[str, Topic] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._readers: weakref.WeakSet[EmbeddedReader] = weakref.WeakSet()
        self._changed: asyncio.Event | None = None
        """What fetches waiting for a record wait on; an append sets and drops it."""
        self._rr = 0

    # -- Log ---------------------------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def available(self) -> bool:
        return True

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self.create_topic(spec.name, spec.partitions, spec.configs)

    def create_topic(
        self, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None
    ) -> None:
        """Create ``name`` unless it exists (an existing topic keeps its partitions and
        configs). Raises :class:`ConnectorError` on an unusable ``cleanup.policy`` or number."""
        if name not in self._topics:
            self._topics[name] = Topic(
                name, partitions, configs or {}, self._defaults, self._clock()
            )

    @property
    def defaults(self) -> Retention:
        """The retention topics get unless their configs say otherwise."""
        return self._defaults

    def set_retention(self, name: str, retention: Retention) -> None:
        """Replace the defaults of topic ``name`` (its own configs still override them)."""
        topic = self._topic(name)
        topic.retention = retention.with_configs(name, topic.configs)

    def retention(self, name: str) -> Retention:
        """The effective retention of topic ``name``."""
        return self._topic(name).retention

    def topic_config(self, name: str) -> dict[str, str]:
        return dict(self._topic(name).configs)

    def records(self, topic: str) -> list[Record]:
        """Every stored record of ``topic``, partition by partition (for tests and tools)."""
        return [
            r
            for part in self._topic(topic).partitions
            for seg in part.segments
            for r in seg.records
        ]

    def stored(self, topic: str) -> tuple[int, int]:
        """Records stored in ``topic`` and the bytes they count (key + value + overhead)."""
        parts = self._topic(topic).partitions
        return sum(p.count for p in parts), sum(p.size for p in parts)

    async def start_offsets(self, topics: Sequence[str]) -> dict[TP, int]:
        """Log-start offset of every partition of ``topics`` (Kafka's beginning offsets)."""
        return {(t, p): part.start for t in topics for p, part in self._parts(t)}

    async def end_offsets(self, topics: Sequence[str]) -> dict[TP, int]:
        return {(t, p): part.end for t in topics for p, part in self._parts(t)}

    async def partitions(self, topic: str) -> list[int]:
        return list(range(len(self._topic(topic).partitions)))

    async def assign(self, topics: Sequence[str], *, batch: int = 0) -> EmbeddedReader:
        start = {(t, p): part.start for t in topics for p, part in self._parts(t)}
        return EmbeddedReader(self, start, group=None)

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        batch: int = 0,
        on_revoke: Callable[[list[TP]], None] | None = None,
    ) -> EmbeddedReader:
        start = {
            (topic, p): max(self._committed.get((group, topic, p), 0), part.start)
            for p, part in self._parts(topic)
        }
        return EmbeddedReader(self, start, group=group)

    async def produce(self, records: Sequence[Outgoing]) -> list[Position]:
        now = self._clock()
        return [self._append(r, None, now) for r in records]

    async def send(self, records: Sequence[Outgoing]) -> None:
        await self.produce(records)

    @property
    def transactional(self) -> bool:
        return True  # one process, one step: produce and commit cannot be torn apart

    async def produce_committing(
        self, records: Sequence[Outgoing], reader: Reader, offsets: Mapping[TP, int]
    ) -> None:
        await self.produce(records)
        await reader.commit(offsets)

    # -- in-process helpers ------------------------------------------------------------------

    def append(self, out: Outgoing, origin: str | None = None) -> Position:
        """Append one record now (``origin`` names where it came from, e.g. ``file:line``)."""
        return self._append(out, origin, self._clock())

    def clean(self, topics: Iterable[str] | None = None) -> None:
        """Run compaction and retention on ``topics`` (default: all) now, whatever the dirty
        ratio; the active segment of a delete-policy partition still stays."""
        now = self._clock()
        for name in list(self._topics) if topics is None else topics:
            topic = self._topic(name)
            for p, part in enumerate(topic.partitions):
                if topic.compact:
                    self._compact(topic, p, part, now)
                if topic.delete:
                    self._retain(topic, p, part, now)

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        return self._committed.get((group, topic, partition))

    def _append(self, out: Outgoing, origin: str | None, now: float) -> Position:
        topic = self._topic(out.topic)
        parts = topic.partitions
        if out.partition is not None:
            if not 0 <= out.partition < len(parts):
                raise ConnectorError(f"{out.topic} has no partition {out.partition}")
            p = out.partition
        elif out.key is not None:
            p = default_partition(out.key, len(parts))
        else:
            p, self._rr = self._rr % len(parts), self._rr + 1
        part = parts[p]
        # copies, to the exact size: orjson.dumps() output keeps a 4 KiB buffer alive
        # whatever its length (and bytes(b) of exact bytes returns b itself)
        key = None if out.key is None else b"%b" % out.key
        value = None if out.value is None else b"%b" % out.value
        size = RECORD_OVERHEAD + (len(key) if key else 0) + (len(value) if value else 0)
        rt = topic.retention
        seg = part.segments[-1]
        if seg.records and (
            seg.size + size > rt.segment_bytes or (now - seg.first) * 1000 >= rt.segment_ms
        ):
            seg = self._roll(topic, p, part, now)
        elif not seg.records:
            seg.first = now
        offset = part.end
        seg.records.append(Record(out.topic, p, offset, key, value, origin))
        seg.size += size
        seg.last = now
        part.end = offset + 1
        part.count += 1
        part.size += size
        if topic.compact:
            part.dirty += size
            if part.dirty >= rt.segment_bytes and part.dirty >= (
                rt.min_cleanable_dirty_ratio * part.size
            ):
                self._compact(topic, p, part, now)
        if self._changed is not None:
            changed, self._changed = self._changed, None
            changed.set()
        return Position(out.topic, p, offset)

    def _roll(self, topic: Topic, p: int, part: Partition, now: float) -> Segment:
        seg = Segment(part.end, [], True, 0, now, now)
        part.segments.append(seg)
        part.bases.append(seg.base)
        if topic.delete:
            self._retain(topic, p, part, now)
        return seg

    def _floor(self, topic: str, p: int, part: Partition) -> int:
        """The lowest offset an open reader still needs: its position, or its group's
        committed offset when lower; the end when no reader is open."""
        floor = part.end
        for reader in self._readers:
            pos = reader._pos.get((topic, p))
            if pos is None:
                continue
            if reader._group is not None:
                committed = self._committed.get((reader._group, topic, p))
                if committed is not None and committed < pos:
                    pos = committed
            floor = min(floor, pos)
        return floor

    def _retain(self, topic: Topic, p: int, part: Partition, now: float) -> None:
        """Drop the oldest closed segments beyond the bounds, none at or past the floor."""
        rt = topic.retention
        if rt.retention_bytes < 0 and rt.retention_records < 0 and rt.retention_ms < 0:
            return
        floor = self._floor(topic.name, p, part)
        horizon = now - rt.retention_ms / 1000
        segs, bases = part.segments, part.bases
        n = 0
        while n + 1 < len(segs) and bases[n + 1] <= floor:
            seg = segs[n]
            if not (
                (rt.retention_bytes >= 0 and part.size - seg.size >= rt.retention_bytes)
                or (
                    rt.retention_records >= 0
                    and part.count - len(seg.records) >= rt.retention_records
                )
                or (rt.retention_ms >= 0 and seg.last <= horizon)
            ):
                break
            part.size -= seg.size
            part.count -= len(seg.records)
            n += 1
        if n:
            del segs[:n]
            del bases[:n]
            part.start = bases[0]

    def _compact(self, topic: Topic, p: int, part: Partition, now: float) -> None:
        """Below the cleaner point keep the last record per key (unless a tombstone) and the
        records without a key; rewrite those into segments. O(records in the partition)."""
        part.dirty = 0
        cleaner = self._floor(topic.name, p, part)
        if cleaner <= part.start:
            return
        segs = part.segments
        k = bisect_right(part.bases, cleaner) - 1  # the segment holding the cleaner point
        straddle = segs[k]
        if straddle.dense:
            i = min(max(cleaner - straddle.base, 0), len(straddle.records))
        else:
            i = bisect_left(straddle.records, cleaner, key=record_offset)
        above = straddle.records[i:]
        later = segs[k + 1 :]
        seen: set[bytes] = set()
        for records in (above, *(s.records for s in later)):
            seen.update(r.key for r in records if r.key is not None)
        kept: list[Record] = []
        for records in (straddle.records[:i], *(s.records for s in reversed(segs[:k]))):
            for r in reversed(records):
                key = r.key
                if key is None:
                    kept.append(r)
                elif key not in seen:
                    seen.add(key)
                    if r.value is not None:
                        kept.append(r)
        kept.reverse()
        last = max(s.last for s in segs[: k + 1])
        out: list[Segment] = []
        base, size = part.start, 0
        chunk: list[Record] = []
        for r in kept:
            n = record_size(r)
            if chunk and size + n > topic.retention.segment_bytes:
                out.append(Segment(base, chunk, False, size, last, last))
                base, chunk, size = r.offset, [], 0
            chunk.append(r)
            size += n
        if chunk:
            out.append(Segment(base, chunk, False, size, last, last))
        if above:  # the rest of the straddling segment
            size = sum(record_size(r) for r in above)
            out.append(Segment(cleaner, above, straddle.dense, size, straddle.first, last))
        elif not later:  # everything was below the cleaner point: a fresh active segment
            out.append(Segment(part.end, [], True, 0, now, now))
        out.extend(later)
        if out[0].base > part.start:  # compaction keeps the log start: extend the first segment
            out[0].base = part.start
            out[0].dense = False
        part.replace(out)

    def _topic(self, name: str) -> Topic:
        try:
            return self._topics[name]
        except KeyError:
            raise ConnectorError(f"unknown topic {name!r}") from None

    def _parts(self, name: str) -> Iterable[tuple[int, Partition]]:
        return enumerate(self._topic(name).partitions)

    def _commit(self, group: str, offsets: Mapping[TP, int]) -> None:
        for (topic, p), off in offsets.items():
            self._committed[(group, topic, p)] = off

    async def _wait(self, timeout_s: float) -> None:
        """Until the next append (or ``timeout_s``). Each waiter holds the event of its own
        generation: a shared event cleared by the next waiter could lose a wakeup."""
        changed = self._changed
        if changed is None:
            changed = self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout_s)


class EmbeddedReader:
    """Reads its partitions from ``start``; while open, its positions (and its group's
    committed offsets) hold retention and compaction back. Close it, or drop it: the log
    only keeps a weak reference."""

    def __init__(self, log: EmbeddedLog, start: dict[TP, int], group: str | None) -> None:
        self._log = log
        self._pos = start
        self._parts = [(tp, log._topic(tp[0]).partitions[tp[1]]) for tp in start]
        self._group = group
        self._closed = False
        log._readers.add(self)

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        pos = self._pos
        for tp, part in self._parts:
            at = pos[tp]
            if at < part.end and len(out) < max_records:
                pos[tp] = part.read(at, max_records - len(out), out)
        return out

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        """Records, or none after ``timeout_s``; a closed reader has none and waits out the
        timeout (a loop over a closed reader must not spin)."""
        if self._closed:
            await asyncio.sleep(timeout_s)
            return []
        out = self._take(max_records)
        if not out and timeout_s > 0:
            await self._log._wait(timeout_s)
            out = self._take(max_records)
        return out

    async def positions(self) -> dict[TP, int]:
        return {tp: part.next_at(self._pos[tp]) for tp, part in self._parts}

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        if self._group is not None:
            self._log._commit(self._group, offsets)

    async def close(self) -> None:
        self._closed = True
        self._log._readers.discard(self)
