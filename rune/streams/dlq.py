"""Dead letters: records that cannot be used go to the DLQ topic with everything needed to
find and replay them, and a notice is logged. Value (JSON)::

    {"topic": ..., "partition": 0, "offset": 12, "stage": "ingest", "error": "...",
     "key_b64": "..." | null, "value_b64": "..." | null, "ts_ms": 1700000000000}

Key: the source record's key (null if it had none).
"""

from __future__ import annotations

import base64
import time

import orjson

from rune.connectors.base import Outgoing, Record
from rune.streams.context import Context

__all__ = ["dead_letter", "publish"]


def _b64(raw: bytes | None) -> str | None:
    return base64.b64encode(raw).decode("ascii") if raw is not None else None


def dead_letter(ctx: Context, record: Record, stage: str, error: str) -> Outgoing:
    value = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "stage": stage,
        "error": error,
        "key_b64": _b64(record.key),
        "value_b64": _b64(record.value),
        "ts_ms": int(time.time() * 1000),
    }
    return Outgoing(ctx.settings.topics.dlq, record.key, orjson.dumps(value))


async def publish(ctx: Context, items: list[tuple[Record, str, str]]) -> None:
    """Publish ``(record, stage, error)`` dead letters and log one notice each."""
    if not items:
        return
    for record, _stage, error in items:
        ctx.notice(f"{record.where}: {error}")
    await ctx.log.produce([dead_letter(ctx, r, s, e) for r, s, e in items])
    ctx.stats.dead_letters += len(items)
    stages = ctx.stats.dead_letter_stages
    for _record, stage, _error in items:
        stages[stage] = stages.get(stage, 0) + 1
