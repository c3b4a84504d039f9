"""Ingest: every instance reads all partitions of the fact and policy topics (manual
assignment), applies each fetched batch in one step and records applied offsets.

One step: bundles first (in offset order), then the fact events of the batch in one
``Authorizer.apply_batch``; if that rejects the batch, event by event so good events are kept
and bad ones go to the dead-letter topic. Every record of the step, used or not, advances the
watermark of its partition.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from rune.connectors.base import Reader, Record
from rune.errors import RuneError
from rune.streams import dlq, heap
from rune.streams.context import Context
from rune.streams.errors import DecodeError
from rune.streams.keys import tombstone_event
from rune.streams.policy import apply_bundles

__all__ = ["Ingest", "decode_event"]

Dead = list[tuple[Record, str, str]]


def decode_event(record: Record) -> dict[str, Any]:
    """The fact/entity event of a record (a tombstone stands for the event its key names)."""
    if record.value is None:
        return tombstone_event(record.key)
    try:
        event = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise DecodeError("an event is a JSON object")
    return event


class Ingest:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.on_changes: list[Any] = []
        """Callables ``f(changes)`` run after each applied step (the changefeed)."""
        self.positions: dict[tuple[str, int], int] = {}
        self._reader: Reader | None = None

    @property
    def topics(self) -> list[str]:
        t = self.ctx.settings.topics
        return [t.facts, t.policies]

    async def open(self) -> None:
        self._reader = await self.ctx.log.assign(self.topics)
        self.positions = await self._reader.positions()

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()

    async def poll(self) -> int:
        """Fetch one batch and apply it; returns the number of records."""
        assert self._reader is not None
        s = self.ctx.settings.stream
        records = await self._reader.fetch(s.ingest_batch, s.poll_timeout_s)
        if records:
            await self.step(records)
        self.positions = await self._reader.positions()
        return len(records)

    def caught_up(self, ends: Mapping[tuple[str, int], int]) -> bool:
        return all(self.positions.get(tp, 0) >= end for tp, end in ends.items())

    async def step(self, records: list[Record]) -> None:
        ctx = self.ctx
        policies = [r for r in records if r.topic == ctx.settings.topics.policies]
        facts = [r for r in records if r.topic != ctx.settings.topics.policies]
        loaded = ctx.stats.bundles_loaded
        timer = ctx.metrics.datalog_time
        dead: Dead = []
        if policies:
            start = time.perf_counter()
            dead = apply_bundles(ctx, policies)
            timer.labels("bundle").observe(time.perf_counter() - start)
        resync = ctx.stats.bundles_loaded != loaded
        if resync and ctx.ready.is_set() and ctx.settings.stream.gc_freeze:
            heap.settle()  # the old views are garbage now, cycles included
        good: list[tuple[Record, dict[str, Any]]] = []
        for record in facts:
            try:
                good.append((record, decode_event(record)))
            except DecodeError as exc:
                ctx.stats.records_undecodable += 1
                dead.append((record, "ingest", str(exc)))
        start = time.perf_counter()
        changes = self._apply(good, dead)
        if good:
            timer.labels("events").observe(time.perf_counter() - start)
        az = ctx.authorizer
        for record in records:
            az.advance_watermark(record.topic, record.partition, record.offset)
        for callback in self.on_changes:
            await callback(changes, resync)
        await dlq.publish(ctx, dead)
        ctx.stepped()

    def _apply(self, good: list[tuple[Record, dict[str, Any]]], dead: Dead) -> dict[str, Any]:
        if not good:
            return {}
        az = self.ctx.authorizer
        stats = self.ctx.stats
        try:
            changes = dict(az.apply_batch([e for _, e in good]))
            stats.events_applied += len(good)
            return changes
        except RuneError:
            pass
        merged: dict[str, Any] = {}
        for record, event in good:
            try:
                one = az.apply(event)
            except RuneError as exc:
                stats.events_rejected += 1
                dead.append((record, "ingest", f"event rejected: {exc}"))
                continue
            stats.events_applied += 1
            for rel, change in one.items():
                merged.setdefault(rel, []).append(change)
        return {rel: _Net(chs) for rel, chs in merged.items()}


class _Net:
    """Net change of a relation over several consecutive changes."""

    def __init__(self, changes: list[Any]) -> None:
        added: set[Any] = set()
        removed: set[Any] = set()
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
