"""Ingest: every instance reads all partitions of the fact and policy topics (manual
assignment), applies each fetched batch in one step and records applied offsets.

One step: bundles first (in offset order, :mod:`rune.streams.bundles`), then the fact events
of the batch in one ``Authorizer.apply_batch``; if that rejects the batch, event by event so
good events are kept. Every record of the step, used or not, advances the watermark of its
partition.

What a fact record must be (else it is dead-lettered, never applied): at most
``stream.max_event_bytes``; a JSON object that is an event of contract v1; keyed with the
canonical key of its event (:mod:`rune.streams.keys`); in the partition Kafka's default
partitioner gives that key (unless ``stream.partitioning = "any"``); valid for the active
bundle.

Pitfall, and the rule that answers it: a compacted topic keeps only the last record of a key.
When a record under a well-formed fact or entity key cannot be applied, the key's earlier
records may already be compacted away, so after a restart that record is all the topic holds
of the key. To give the same answers before and after compaction, such a record also
*removes* what its key names (as a tombstone would), besides being dead-lettered. A record in
the wrong partition does not: the key's state lives in its own partition.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from rune.connectors.base import TP, Reader, Record
from rune.connectors.partitioner import default_partition
from rune.errors import RuneError
from rune.jsonbytes import loads_numbers
from rune.streams.bundles import BundleStage
from rune.streams.context import Context
from rune.streams.dlq import DeadLetters, Letter
from rune.streams.errors import DecodeError
from rune.streams.faults import contained
from rune.streams.keys import event_key, keys_match, tombstone_event

__all__ = ["Ingest", "decode_event"]


def decode_event(record: Record) -> dict[str, Any]:
    """The fact/entity event of a record (a tombstone stands for the event its key names)."""
    if record.value is None:
        return tombstone_event(record.key)
    try:
        event = loads_numbers(record.value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise DecodeError("an event is a JSON object")
    return event


class Ingest:
    def __init__(self, ctx: Context, bundles: BundleStage, dead_letters: DeadLetters) -> None:
        self.ctx = ctx
        self.bundles = bundles
        self.dead_letters = dead_letters
        self.on_changes: list[Any] = []
        """Callables ``f(changes, resync)`` run after each applied step (the changefeed)."""
        self.positions: dict[TP, int] = {}
        self._reader: Reader | None = None
        self._fact_partitions = 1

    @property
    def topics(self) -> list[str]:
        t = self.ctx.settings.topics
        return [t.facts, t.policies]

    async def open(self) -> None:
        ctx = self.ctx
        self._fact_partitions = len(await ctx.log.partitions(ctx.settings.topics.facts))
        self._reader = await ctx.log.assign(self.topics, batch=ctx.settings.stream.ingest_batch)
        self.positions = await self._reader.positions()

    async def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()

    async def poll(self) -> int:
        """Fetch one batch and apply it; returns the number of records."""
        assert self._reader is not None
        s = self.ctx.settings.stream
        records = await self._reader.fetch(s.ingest_batch, s.poll_timeout_s)
        if records:
            await self.step(records)
        self.positions = await self._reader.positions()
        return len(records)

    def caught_up(self, ends: Mapping[TP, int]) -> bool:
        return all(self.positions.get(tp, 0) >= end for tp, end in ends.items())

    async def step(self, records: list[Record]) -> None:
        ctx = self.ctx
        policy_topic = ctx.settings.topics.policies
        policies = [r for r in records if r.topic == policy_topic]
        facts = [r for r in records if r.topic != policy_topic]
        dead: list[Letter] = []
        resync = False
        if policies:
            start = time.perf_counter()
            resync, rejected = await self.bundles.apply(policies)
            dead.extend(rejected)
            ctx.metrics.datalog_time.labels("bundle").observe(time.perf_counter() - start)
        events: list[tuple[Record, dict[str, Any], bool]] = []
        for record in facts:
            try:
                event, error = self._event(record)
            except Exception as exc:  # a bug: contained to this record
                event, error = _removal(record.key), contained(ctx, "ingest", record.where, exc)
            if error is not None:
                dead.append((record, "ingest", error))
            if event is not None:
                events.append((record, event, error is not None))
        start = time.perf_counter()
        changes = self._apply(events, dead)
        if events:
            ctx.metrics.datalog_time.labels("events").observe(time.perf_counter() - start)
        az = ctx.authorizer
        for record in records:
            az.advance_watermark(record.topic, record.partition, record.offset)
        for callback in self.on_changes:
            await callback(changes, resync)
        await self.dead_letters.publish(dead, checkpoint=True)
        ctx.stepped()

    def _event(self, record: Record) -> tuple[dict[str, Any] | None, str | None]:
        """The event to apply for ``record`` and the error to dead-letter it with (either
        may be None)."""
        ctx = self.ctx
        key, value = record.key, record.value
        if value is None:
            if key is None:
                ctx.stats.records_undecodable += 1
                return None, "tombstone without a key"
            misplaced = self._misplaced(record, key)
            if misplaced is not None:
                return None, misplaced
            try:
                return tombstone_event(key), None
            except DecodeError as exc:
                ctx.stats.records_undecodable += 1
                return None, f"tombstone: {exc}"
        limit = ctx.settings.stream.max_event_bytes
        if len(value) > limit:
            ctx.stats.records_undecodable += 1
            return _removal(key), f"record of {len(value)} bytes exceeds {limit} bytes"
        try:
            event = decode_event(record)
            expected = event_key(event)
        except DecodeError as exc:
            ctx.stats.records_undecodable += 1
            return _removal(key), str(exc)
        if key is None:
            ctx.stats.records_undecodable += 1
            return None, "a fact record needs the canonical key of its event (it has none)"
        misplaced = self._misplaced(record, key)
        if misplaced is not None:
            return None, misplaced
        if not keys_match(key, expected):
            ctx.stats.records_undecodable += 1
            shown = key[:200].decode("utf-8", "replace")
            return _removal(key), (
                f"record key {shown!r} is not the key of its event "
                f"{expected[:200].decode('utf-8', 'replace')!r}"
            )
        return event, None

    def _misplaced(self, record: Record, key: bytes) -> str | None:
        """Why ``record`` is not in its key's partition (None when it is, or unchecked)."""
        n = self._fact_partitions
        if self.ctx.settings.stream.partitioning != "default" or n < 2:
            return None
        home = default_partition(key, n)
        if home == record.partition:
            return None
        self.ctx.stats.records_undecodable += 1
        return (
            f"record in partition {record.partition}, but Kafka's default partitioner puts "
            f"its key in partition {home} (see stream.partitioning)"
        )

    def _apply(
        self, events: list[tuple[Record, dict[str, Any], bool]], dead: list[Letter]
    ) -> dict[str, Any]:
        """Apply ``(record, event, removal)`` items in order: ``removal`` marks the removal
        standing for a dead-lettered record (best effort: its failure is not reported again);
        a rejected event is dead-lettered and replaced by the removal its key names."""
        if not events:
            return {}
        ctx = self.ctx
        stats = ctx.stats

        def rejected(i: int, exc: Exception) -> dict[str, Any] | None:
            record, _event, removal = events[i]
            if removal:
                return None  # nothing the engine accepts to remove
            stats.events_rejected += 1
            if isinstance(exc, RuneError):
                error = f"event rejected: {exc}"
            else:
                error = contained(ctx, "ingest", record.where, exc)
            dead.append((record, "ingest", error))
            return _removal(record.key)

        changes, failed = ctx.authorizer.apply_each([e for _, e, _ in events], rejected)
        failed_at = {i for i, _ in failed}
        stats.events_applied += sum(
            1 for i, (_, _, removal) in enumerate(events) if not removal and i not in failed_at
        )
        return changes


def _removal(key: bytes | None) -> dict[str, Any] | None:
    """The retract/delete event a well-formed record key names (None for other keys)."""
    if key is None:
        return None
    try:
        return tombstone_event(key)
    except DecodeError:
        return None
