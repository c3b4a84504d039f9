"""The one path every decision takes after it is made, whatever asked for it (the request
topic, HTTP): audited (counted, logged, shaped for the record), encoded, and delivered to the
decision topic with retries.

Delivery guarantees: :meth:`Outbox.deliver` returns only once the log acknowledged every
record. A delivery that fails for a reason that may pass (a broker away, a timeout) is tried
again with exponential backoff until it succeeds or the service stops; a record the topic
refuses for good (larger than the topic allows) is replaced by a slim version of itself (no
explanation, an ``error`` saying so); a fatal log error propagates and stops the service.
Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import orjson

from rune.connectors.base import DeliveryError, Outgoing
from rune.policies.decision import Decision
from rune.streams.context import Context
from rune.streams.retry import Backoff

__all__ = ["SLIM_FIELD_CHARS", "Outbox"]

SLIM_FIELD_CHARS: Final = 1024
"""Longest string field kept in a slim record (a slim record keeps only scalar fields)."""


class Outbox:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def records(
        self, requests: Sequence[Any], decisions: Sequence[Decision], source: str
    ) -> tuple[list[Decision], list[Outgoing]]:
        """Audit ``decisions`` (``requests[i]`` is the raw request of ``decisions[i]``) and
        encode them: the shaped decisions and their records for the decision topic."""
        shaped = self.ctx.audit.decided(requests, decisions, source)
        topic = self.ctx.settings.topics.decisions
        return shaped, [Outgoing(topic, d.key(), d.encode()) for d in shaped]

    async def publish(
        self, requests: Sequence[Any], decisions: Sequence[Decision], source: str
    ) -> list[Decision]:
        """Audit, encode and deliver ``decisions``; returns them as recorded."""
        shaped, out = self.records(requests, decisions, source)
        await self.deliver(out)
        self.ctx.stats.decisions += len(out)
        return shaped

    async def deliver(self, records: list[Outgoing]) -> None:
        """Produce ``records`` (decisions or dead letters) until all are acknowledged."""
        ctx = self.ctx
        backoff = Backoff(ctx.settings.stream.retry_backoff_max_s)
        todo = records
        while todo:
            try:
                await ctx.log.send(todo)
                break
            except DeliveryError as exc:
                ctx.metrics.delivery_retries.inc(len(exc.failed))
                if exc.retriable:
                    if ctx.stopping.is_set():
                        raise  # not acknowledged: the requests stay uncommitted
                    ctx.notice(f"delivery failed, retrying: {exc}")
                    todo = exc.failed
                    await backoff.wait(ctx.stopping)
                    continue
                ctx.notice(f"records refused by the log, sending slim versions: {exc}")
                todo = [slim(r) for r in exc.failed]


def slim(record: Outgoing) -> Outgoing:
    """A version of a refused record small enough for any topic: a decision without its
    explanation and lists, or a dead letter without its payload."""
    try:
        value = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        return record._replace(value=orjson.dumps({"error": "record refused by the log"}))
    kept = {k: v for k, v in value.items() if isinstance(v, int | bool | str | None)}
    kept = {k: (v[:SLIM_FIELD_CHARS] if isinstance(v, str) else v) for k, v in kept.items()}
    kept["error"] = f"record of {len(record.value or b'')} bytes refused by the log; cut down"
    return record._replace(value=orjson.dumps(kept))
