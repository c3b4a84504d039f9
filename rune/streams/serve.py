"""Serve: requests through a consumer group, decided in batches, decisions produced with an
idempotent producer and acknowledged before the request offsets are committed
(at-least-once). Requests with a consistency token wait (bounded) in a waiting room served by
a second task, so requests without a token are never held up by them.

Pipelined: a batch's decisions are handed to a *delivery* task (produce, await the
acknowledgement, mark the requests answered, commit) and the next batch is fetched at once;
at most :data:`MAX_DELIVERIES` are in flight. Commits never pass an unanswered request
(``OffsetTracker``), and at most one commit is in flight (later ones coalesce)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from rune.connectors.base import ConnectorError, Outgoing, Reader, Record
from rune.policies.requests import read_id
from rune.streams import dlq
from rune.streams.consistency import TokenError, WaitingRoom, parse_token, satisfied
from rune.streams.context import Context
from rune.streams.offsets import OffsetTracker

__all__ = ["MAX_DECISION_BYTES", "MAX_DELIVERIES", "Serve", "encode_decision"]

MAX_DELIVERIES = 8
MAX_DECISION_BYTES = 900 * 1024
"""A decision record stays below Kafka's default message.max.bytes (1 MiB)."""


def encode_decision(decision: dict[str, Any]) -> bytes:
    """The decision as JSON; an explanation that would make the record too large for the
    topic is dropped (and said so in ``error``) rather than failing the produce."""
    raw = orjson.dumps(decision)
    if len(raw) <= MAX_DECISION_BYTES:
        return raw
    slim = {k: v for k, v in decision.items() if k != "explanation"}
    slim["error"] = f"explanation dropped: the decision would be {len(raw)} bytes"
    return orjson.dumps(slim)


class Serve:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tracker = OffsetTracker()
        self.waiting = WaitingRoom()
        self._reader: Reader | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._committing: asyncio.Task[None] | None = None
        self._commit_again = False
        self._ingested = frozenset({ctx.settings.topics.facts, ctx.settings.topics.policies})

    async def open(self) -> None:
        s = self.ctx.settings
        self._reader = await self.ctx.log.subscribe(s.topics.requests, s.kafka.group_id)

    async def drain(self) -> None:
        """Wait for every delivery in flight and the last commit; re-raise a failure."""
        while self._deliveries:
            await asyncio.wait(list(self._deliveries))
        if self._committing is not None:
            await self._committing
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def close(self) -> None:
        if self._deliveries or self._committing is not None:
            with contextlib.suppress(Exception):
                await self.drain()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()

    @property
    def opened(self) -> bool:
        return self._reader is not None

    async def positions(self) -> dict[tuple[str, int], int]:
        assert self._reader is not None
        return await self._reader.positions()

    @property
    def idle(self) -> bool:
        return not len(self.waiting) and not self.tracker.in_flight

    async def poll(self) -> int:
        """Fetch one batch of requests and answer those that need not wait."""
        assert self._reader is not None
        s = self.ctx.settings.stream
        records = await self._reader.fetch(s.serve_batch, s.poll_timeout_s)
        if not records:
            return 0
        self.tracker.fetched(((r.topic, r.partition), r.offset) for r in records)
        self.ctx.stats.requests += len(records)
        now = time.monotonic()
        answer: list[tuple[Record, Any]] = []
        stale: list[tuple[Record, dict[str, Any], str]] = []
        dead: list[tuple[Record, str, str]] = []
        watermark = self.ctx.authorizer.watermark
        for record in records:
            request, error = _decode(record, self.ctx.settings.server.max_id_chars)
            if request is None:
                dead.append((record, "serve", error))
                continue
            try:
                token = parse_token(request, self._ingested)
            except TokenError as exc:
                stale.append((record, request, f"bad consistency token: {exc}"))
                continue
            if token is None or satisfied(token, watermark):
                answer.append((record, _without_token(request, None)))
            elif len(self.waiting) >= s.max_waiting:
                stale.append((record, request, "too many requests wait for consistency tokens"))
            else:
                self.waiting.add(record, request, token, now + s.token_wait_s)
                self.ctx.progress.set()  # wake the waiter: a new deadline
        await dlq.publish(self.ctx, dead)
        await self._answer(answer, stale, [r for r, _, _ in dead])
        return len(records)

    async def serve_waiting(self) -> None:
        """Answer waiting requests whose tokens are satisfied or whose wait expired."""
        ready, expired = self.waiting.take(self.ctx.authorizer.watermark, time.monotonic())
        if ready or expired:
            wait = self.ctx.settings.stream.token_wait_s
            await self._answer(
                [(w.record, _without_token(w.request, None)) for w in ready],
                [
                    (w.record, w.request, f"stale view: token {w.token} not applied in {wait}s")
                    for w in expired
                ],
                [],
            )

    async def wait_loop(self) -> None:
        """The waiter task: wakes on ingest progress or the next deadline."""
        ctx = self.ctx
        while not ctx.stopping.is_set():
            deadline = self.waiting.next_deadline()
            timeout = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
            ctx.progress.clear()
            if self.waiting.next_deadline() is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ctx.progress.wait(), timeout)
            await self.serve_waiting()

    async def _answer(
        self,
        answer: list[tuple[Record, Any]],
        stale: list[tuple[Record, dict[str, Any], str]],
        done: list[Record],
    ) -> None:
        ctx = self.ctx
        self._raise_failure()
        decisions = ctx.authorizer.check_batch([req for _, req in answer]) if answer else []
        for _record, request, error in stale:
            decisions.append(_stale(ctx, request, error))
        ctx.audit.decided(
            [req for _, req in answer] + [req for _, req, _ in stale], decisions, "kafka"
        )
        records = [r for r, _ in answer] + [r for r, _, _ in stale] + done
        topic = ctx.settings.topics.decisions
        out = [
            Outgoing(
                topic,
                d["id"].encode() if isinstance(d.get("id"), str) else None,
                encode_decision(d),
            )
            for d in decisions
        ]
        delivery = asyncio.create_task(self._deliver(out, records, len(stale)))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        if len(self._deliveries) >= MAX_DELIVERIES:  # backpressure
            await asyncio.wait(list(self._deliveries), return_when="FIRST_COMPLETED")
            self._raise_failure()

    async def _deliver(self, out: list[Outgoing], records: list[Record], stale: int) -> None:
        ctx = self.ctx
        try:
            await ctx.log.produce(out)
        except BaseException as exc:  # surfaced by the serve loop's next step
            self._failure = self._failure or exc
            return
        ctx.stats.decisions += len(out)
        ctx.stats.stale += stale
        self.tracker.done(((r.topic, r.partition), r.offset) for r in records)
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_loop())
        else:
            self._commit_again = True

    async def _commit_loop(self) -> None:
        try:
            while True:
                self._commit_again = False
                await self._commit()
                if not self._commit_again:
                    return
        finally:
            self._committing = None

    async def _commit(self) -> None:
        assert self._reader is not None
        offsets = self.tracker.committable()
        if not offsets:
            return
        try:
            await self._reader.commit(offsets)
        except ConnectorError as exc:
            self.ctx.notice(f"commit skipped: {exc}")
            return
        self.tracker.mark_committed(offsets)


def _decode(record: Record, max_id_chars: int) -> tuple[dict[str, Any] | None, str]:
    if record.value is None:
        return None, "request record without a value"
    try:
        request = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        return None, f"invalid JSON: {exc}"
    if read_id(request, max_id_chars) is None:
        return None, "request without a readable id"
    assert isinstance(request, dict)
    return request, ""


def _without_token(request: dict[str, Any], error: None = None) -> dict[str, Any]:
    """The request as ``Authorizer.check`` takes it (``consistency`` is the service's)."""
    if "consistency" not in request:
        return request
    return {k: v for k, v in request.items() if k != "consistency"}


def _stale(ctx: Context, request: dict[str, Any], error: str) -> dict[str, Any]:
    az = ctx.authorizer
    return {
        "id": read_id(request, ctx.settings.server.max_id_chars),
        "decision": "deny",
        "reasons": [],
        "errors": [],
        "policy_version": az.policy_version,
        "watermark": az.watermark,
        "latency_us": 0,
        "error": error,
    }
