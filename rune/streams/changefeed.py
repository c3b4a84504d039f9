"""Changefeed: changes of configured derived relations, published to the changes topic.

- key = canonical JSON ``[relation, arg1, ...]`` (entities as ``{"id": I, "type": T}``);
  value = ``{"relation": r, "tuple": [...]}`` when the tuple is present, null when removed. So
  the compacted topic is the current set of tuples.
- checkpoint records, key ``__checkpoint__``, one to every partition, value
  ``{"checkpoint": true, "watermark": {...}, "policy_version": v, "instance": id,
  "ts_ms": wall-clock milliseconds}``: every
  change of the views up to that watermark was published before it, in that partition.

Nothing is published before the instance is ready; at readiness the topic is reconciled with
the views (tombstones for tuples no longer present, records for missing ones), then changes
follow every ingest step and checkpoints follow every ``checkpoint_interval_s``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from rune.connectors.base import Outgoing
from rune.ivm.values import EntityRef
from rune.jsonbytes import dumps_kept
from rune.streams.context import Context
from rune.streams.outbox import Outbox

__all__ = ["CHECKPOINT_KEY", "Changefeed", "tuple_key"]

CHECKPOINT_KEY = b"__checkpoint__"


def _json(v: Any) -> Any:
    return {"id": v.id, "type": v.type} if isinstance(v, EntityRef) else v


def tuple_key(relation: str, row: tuple[Any, ...]) -> bytes:
    return dumps_kept([relation, *(_json(v) for v in row)], orjson.OPT_SORT_KEYS)


def _value(relation: str, row: tuple[Any, ...]) -> bytes:
    return dumps_kept({"relation": relation, "tuple": [_json(v) for v in row]})


class Changefeed:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.relations = tuple(ctx.settings.stream.changefeed_relations)
        self.instance = uuid.uuid4().hex[:12]
        self._live = False
        self._last_checkpoint = 0.0
        self._mirror: dict[bytes, bytes] = {}
        """What the topic holds (as far as this instance published), once live."""

    @property
    def enabled(self) -> bool:
        return bool(self.relations)

    async def on_changes(self, changes: Mapping[str, Any], resync: bool = False) -> None:
        """Publish ``changes``; ``resync``: the rules changed (a new bundle), diff the views
        against what was published instead (``load_bundle`` reports no row changes)."""
        if not (self._live and self.relations):
            return
        if resync:
            await self._publish_diff(self._current(), dict(self._mirror))
            return
        topic = self.ctx.settings.topics.changes
        out: list[Outgoing] = []
        for rel in self.relations:
            ch = changes.get(rel)
            if ch is None:
                continue
            for row in ch.removed:
                key = tuple_key(rel, row)
                self._mirror.pop(key, None)
                out.append(Outgoing(topic, key, None))
            for row in ch.added:
                key, value = tuple_key(rel, row), _value(rel, row)
                self._mirror[key] = value
                out.append(Outgoing(topic, key, value))
        if out:
            await Outbox(self.ctx).deliver(out)
            self.ctx.stats.changes_published += len(out)

    async def _publish_diff(
        self, current: dict[bytes, bytes], published: dict[bytes, bytes]
    ) -> None:
        topic = self.ctx.settings.topics.changes
        out = [Outgoing(topic, k, None) for k in published if k not in current]
        out += [Outgoing(topic, k, v) for k, v in current.items() if published.get(k) != v]
        if out:
            await Outbox(self.ctx).deliver(out)
            self.ctx.stats.changes_published += len(out)
        self._mirror = current

    def _current(self) -> dict[bytes, bytes]:
        engine = self.ctx.authorizer.engine
        out: dict[bytes, bytes] = {}
        for rel in self.relations:
            arity = engine.arity(rel)
            if arity is None:
                continue
            for row in engine.lookup(rel, (None,) * arity):
                out[tuple_key(rel, row)] = _value(rel, row)
        return out

    async def _published(self) -> dict[bytes, bytes]:
        log = self.ctx.log
        topic = self.ctx.settings.topics.changes
        ends = await log.end_offsets([topic])
        reader = await log.assign([topic], batch=10_000)
        state: dict[bytes, bytes] = {}
        try:
            while True:
                pos = await reader.positions()
                if all(pos.get(tp, 0) >= end for tp, end in ends.items()):
                    return state
                for r in await reader.fetch(10_000, 0.2):
                    if r.key is None or r.key == CHECKPOINT_KEY:
                        continue
                    if r.value is None:
                        state.pop(r.key, None)
                    else:
                        state[r.key] = r.value
        finally:
            await reader.close()

    async def go_live(self) -> None:
        """At readiness: reconcile the topic with the views, then publish a checkpoint."""
        if not self.relations:
            return
        await self._publish_diff(self._current(), await self._published())
        self._live = True
        await self.checkpoint()

    async def maybe_checkpoint(self) -> None:
        if self._live and time.monotonic() - self._last_checkpoint >= (
            self.ctx.settings.stream.checkpoint_interval_s
        ):
            await self.checkpoint()

    async def checkpoint(self) -> None:
        if not self.relations:
            return
        ctx = self.ctx
        topic = ctx.settings.topics.changes
        value = orjson.dumps(
            {
                "checkpoint": True,
                "watermark": ctx.authorizer.watermark,
                "policy_version": ctx.authorizer.policy_version,
                "instance": self.instance,
                "ts_ms": int(time.time() * 1000),
            }
        )
        partitions = await ctx.log.partitions(topic)
        await Outbox(ctx).deliver([Outgoing(topic, CHECKPOINT_KEY, value, p) for p in partitions])
        ctx.stats.checkpoints += 1
        self._last_checkpoint = time.monotonic()
