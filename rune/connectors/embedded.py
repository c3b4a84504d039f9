"""An in-process log with Kafka's semantics: partitions, offsets, keys, tombstones, groups.

Used by ``rune run`` without ``--kafka`` and by unit tests. Records live in memory; a produce
is acknowledged when it returns. Records are placed by key (CRC32 of the key modulo the
partition count) or round-robin without a key, like Kafka's default partitioner in spirit.
A consumer group here has one member, which gets every partition of the topic. Compaction is
not simulated (a compacted topic keeps all records; readers see the same final state).
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Mapping, Sequence

from rune.connectors.base import ConnectorError, Outgoing, Position, Record, TopicSpec

__all__ = ["EmbeddedLog", "EmbeddedReader"]


class EmbeddedLog:
    def __init__(self) -> None:
        self._topics: dict[str, list[list[Record]]] = {}
        self._configs: dict[str, dict[str, str]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._changed: asyncio.Event | None = None
        """What fetches waiting for a record wait on; an append sets and drops it."""
        self._rr = 0

    # -- Log ---------------------------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        for spec in specs:
            self.create_topic(spec.name, spec.partitions, spec.configs)

    def create_topic(
        self, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None
    ) -> None:
        if name not in self._topics:
            self._topics[name] = [[] for _ in range(max(1, partitions))]
            self._configs[name] = dict(configs or {})

    def topic_config(self, name: str) -> dict[str, str]:
        return dict(self._configs[name])

    def records(self, topic: str) -> list[Record]:
        """Every record of ``topic``, partition by partition (for tests and tools)."""
        return [r for part in self._partitions(topic) for r in part]

    async def end_offsets(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        return {(t, p): len(part) for t in topics for p, part in enumerate(self._partitions(t))}

    async def assign(self, topics: Sequence[str]) -> EmbeddedReader:
        start = {(t, p): 0 for t in topics for p in range(len(self._partitions(t)))}
        return EmbeddedReader(self, start, group=None)

    async def subscribe(self, topic: str, group: str) -> EmbeddedReader:
        start = {
            (topic, p): self._committed.get((group, topic, p), 0)
            for p in range(len(self._partitions(topic)))
        }
        return EmbeddedReader(self, start, group=group)

    async def produce(self, records: Sequence[Outgoing]) -> list[Position]:
        return [self.append(r) for r in records]

    # -- in-process helpers ------------------------------------------------------------------

    def append(self, out: Outgoing, origin: str | None = None) -> Position:
        parts = self._partitions(out.topic)
        if out.partition is not None:
            if not 0 <= out.partition < len(parts):
                raise ConnectorError(f"{out.topic} has no partition {out.partition}")
            p = out.partition
        elif out.key is not None:
            p = zlib.crc32(out.key) % len(parts)
        else:
            p, self._rr = self._rr % len(parts), self._rr + 1
        part = parts[p]
        part.append(Record(out.topic, p, len(part), out.key, out.value, origin))
        if self._changed is not None:
            changed, self._changed = self._changed, None
            changed.set()
        return Position(out.topic, p, len(part) - 1)

    def _partitions(self, topic: str) -> list[list[Record]]:
        try:
            return self._topics[topic]
        except KeyError:
            raise ConnectorError(f"unknown topic {topic!r}") from None

    def _commit(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        for (topic, p), off in offsets.items():
            self._committed[(group, topic, p)] = off

    def committed(self, group: str, topic: str, partition: int) -> int | None:
        return self._committed.get((group, topic, partition))

    async def _wait(self, timeout_s: float) -> None:
        """Until the next append (or ``timeout_s``). Each waiter holds the event of its own
        generation: a shared event cleared by the next waiter could lose a wakeup."""
        changed = self._changed
        if changed is None:
            changed = self._changed = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout_s)


class EmbeddedReader:
    def __init__(
        self, log: EmbeddedLog, start: dict[tuple[str, int], int], group: str | None
    ) -> None:
        self._log = log
        self._pos = start
        self._group = group
        self._closed = False

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        for (topic, p), pos in self._pos.items():
            part = self._log._partitions(topic)[p]
            if pos < len(part) and len(out) < max_records:
                chunk = part[pos : pos + max_records - len(out)]
                out.extend(chunk)
                self._pos[(topic, p)] = pos + len(chunk)
        return out

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            return []
        out = self._take(max_records)
        if not out and timeout_s > 0:
            await self._log._wait(timeout_s)
            out = self._take(max_records)
        return out

    async def positions(self) -> dict[tuple[str, int], int]:
        return dict(self._pos)

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if self._group is not None:
            self._log._commit(self._group, offsets)

    async def close(self) -> None:
        self._closed = True
