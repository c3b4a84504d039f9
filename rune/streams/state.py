"""The service's own compacted state topic (``topics.state``, one partition): what must
survive compaction of the input topics and restarts.

Keys and values (JSON):

- ``bundle/<name>``: the last bundle this service activated under that name,
  ``{"name", "version", "bundle": {...}, "source": {"topic", "partition", "offset"}}``. A
  rejected bundle produced later under the same key of the policy topic cannot shadow it:
  after compaction and a restart the service restores this one first.
- ``dead-letters/<topic>``: ``{"topic", "partitions": {"0": offset}}``, the highest offset of
  each partition of an ingested topic whose dead letter was acknowledged, so that a poison
  record replayed at the next start is not dead-lettered again.

Every instance writes the same content for the same key, so several instances share the
topic safely.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from rune.connectors.base import TP, Outgoing
from rune.streams.context import Context
from rune.streams.outbox import Outbox

__all__ = ["Restored", "ServiceState"]

BUNDLE_PREFIX = "bundle/"
DEAD_LETTERS_PREFIX = "dead-letters/"


@dataclass(slots=True)
class Restored:
    """What a start found in the state topic."""

    bundles: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    """Bundle name -> (version, bundle) of the last activated bundle of that name."""
    dead_lettered: dict[TP, int] = field(default_factory=dict)
    """Highest dead-lettered offset per ingested partition."""

    def best_bundle(self) -> tuple[str, int, dict[str, Any]] | None:
        if not self.bundles:
            return None
        name, (version, bundle) = max(self.bundles.items(), key=lambda item: item[1][0])
        return name, version, bundle


class ServiceState:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._dead_lettered: dict[str, dict[int, int]] = {}

    @property
    def topic(self) -> str:
        return self.ctx.settings.topics.state

    async def restore(self) -> Restored:
        """Read the whole state topic (it is small: one record per bundle name and topic)."""
        log = self.ctx.log
        ends = await log.end_offsets([self.topic])
        reader = await log.assign([self.topic], batch=1000)
        latest: dict[bytes, bytes | None] = {}
        try:
            while True:
                pos = await reader.positions()
                if all(pos.get(tp, 0) >= end for tp, end in ends.items()):
                    break
                for r in await reader.fetch(1000, 0.2):
                    if r.key is not None:
                        latest[r.key] = r.value
        finally:
            await reader.close()
        out = Restored()
        for key, value in latest.items():
            self._read(key.decode("utf-8", "replace"), value, out)
        for (topic, p), offset in out.dead_lettered.items():
            self._dead_lettered.setdefault(topic, {})[p] = offset
        return out

    def _read(self, key: str, value: bytes | None, out: Restored) -> None:
        if value is None:
            return
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError:
            self.ctx.notice(f"state record {key!r} is not JSON; ignored")
            return
        if not isinstance(doc, dict):
            return
        if key.startswith(BUNDLE_PREFIX):
            version, bundle = doc.get("version"), doc.get("bundle")
            if isinstance(version, int) and isinstance(bundle, dict):
                out.bundles[key[len(BUNDLE_PREFIX) :]] = (version, bundle)
        elif key.startswith(DEAD_LETTERS_PREFIX):
            topic, parts = doc.get("topic"), doc.get("partitions")
            if isinstance(topic, str) and isinstance(parts, dict):
                for p, offset in parts.items():
                    if str(p).isdigit() and isinstance(offset, int):
                        out.dead_lettered[(topic, int(p))] = offset

    async def save_bundle(
        self, name: str, version: int, bundle: Mapping[str, Any], source: TP, offset: int
    ) -> None:
        value = orjson.dumps(
            {
                "name": name,
                "version": version,
                "bundle": bundle,
                "source": {"topic": source[0], "partition": source[1], "offset": offset},
            }
        )
        await self._write(f"{BUNDLE_PREFIX}{name}", value)

    async def save_dead_letters(self, offsets: Mapping[TP, int]) -> None:
        """Record that dead letters up to ``offsets`` were acknowledged."""
        changed: set[str] = set()
        for (topic, p), offset in offsets.items():
            known = self._dead_lettered.setdefault(topic, {})
            if offset > known.get(p, -1):
                known[p] = offset
                changed.add(topic)
        for topic in sorted(changed):
            parts = {str(p): off for p, off in sorted(self._dead_lettered[topic].items())}
            value = orjson.dumps({"topic": topic, "partitions": parts})
            await self._write(f"{DEAD_LETTERS_PREFIX}{topic}", value)

    async def _write(self, key: str, value: bytes) -> None:
        await Outbox(self.ctx).deliver([Outgoing(self.topic, key.encode(), value)])
