"""Dead letters: records that cannot be used go to the DLQ topic with what is needed to find
and replay them, and a notice is logged. Key: ``<topic>/<partition>/<offset>`` of the source
record (consumers deduplicate on it). Value (JSON)::

    {"topic": ..., "partition": 0, "offset": 12, "stage": "ingest", "error": "...",
     "key_b64": "..." | null, "value_b64": "..." | null, "key_bytes": 40, "value_bytes": 812,
     "value_sha256": "...", "truncated": false, "ts_ms": 1700000000000}

Bounded: the key and value are kept up to ``stream.dead_letter_payload_bytes`` each
(``truncated`` says when they were cut; ``value_sha256`` and the sizes describe the whole
record) and ``error`` up to :data:`MAX_ERROR_CHARS`, so a dead letter always fits the topic,
however large the record it describes.

Replays: a record of an ingested topic at or below the offset recorded in the state topic
(:mod:`rune.streams.state`) was dead-lettered before a restart and is not dead-lettered again
(counted in ``dead_letters_skipped``).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterable
from typing import Final

import orjson

from rune.connectors.base import TP, Outgoing, Record
from rune.streams.context import Context
from rune.streams.outbox import Outbox
from rune.streams.state import ServiceState

__all__ = ["MAX_ERROR_CHARS", "DeadLetters", "Letter"]

MAX_ERROR_CHARS: Final = 4096

Letter = tuple[Record, str, str]
"""``(record, stage, error)``."""


class DeadLetters:
    def __init__(self, ctx: Context, state: ServiceState) -> None:
        self.ctx = ctx
        self.state = state
        self.replayed: dict[TP, int] = {}
        """Per ingested partition: dead letters up to this offset were published before."""

    def encode(self, record: Record, stage: str, error: str) -> Outgoing:
        limit = self.ctx.settings.stream.dead_letter_payload_bytes
        key, value = record.key, record.value
        truncated = (key is not None and len(key) > limit) or (
            value is not None and len(value) > limit
        )
        doc = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "stage": stage,
            "error": error[:MAX_ERROR_CHARS],
            "key_b64": _b64(key, limit),
            "value_b64": _b64(value, limit),
            "key_bytes": len(key) if key is not None else None,
            "value_bytes": len(value) if value is not None else None,
            "value_sha256": hashlib.sha256(value).hexdigest() if value is not None else None,
            "truncated": truncated,
            "ts_ms": int(time.time() * 1000),
        }
        source = f"{record.topic}/{record.partition}/{record.offset}".encode()
        return Outgoing(self.ctx.settings.topics.dlq, source, orjson.dumps(doc))

    def select(self, items: Iterable[Letter]) -> list[Letter]:
        """The letters to publish: those not published before a restart (see module doc);
        logs a notice for each and counts them."""
        ctx = self.ctx
        out: list[Letter] = []
        stages = ctx.stats.dead_letter_stages
        for record, stage, error in items:
            if record.offset <= self.replayed.get((record.topic, record.partition), -1):
                ctx.stats.dead_letters_skipped += 1
                continue
            ctx.notice(f"{record.where}: {error[:MAX_ERROR_CHARS]}")
            stages[stage] = stages.get(stage, 0) + 1
            out.append((record, stage, error))
        return out

    async def publish(self, items: list[Letter], *, checkpoint: bool = False) -> None:
        """Publish dead letters (acknowledged when this returns); ``checkpoint``: the
        records come from an ingested topic, so record how far they went in the state
        topic."""
        letters = self.select(items)
        if not letters:
            return
        await Outbox(self.ctx).deliver([self.encode(*letter) for letter in letters])
        self.ctx.stats.dead_letters += len(letters)
        if checkpoint:
            highest: dict[TP, int] = {}
            for record, _stage, _error in letters:
                tp = (record.topic, record.partition)
                highest[tp] = max(highest.get(tp, -1), record.offset)
            await self.state.save_dead_letters(highest)


def _b64(raw: bytes | None, limit: int) -> str | None:
    if raw is None:
        return None
    return base64.b64encode(raw[:limit]).decode("ascii")
