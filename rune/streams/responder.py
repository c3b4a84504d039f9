"""The responder: requests through a consumer group, decided in batches, their decisions
delivered to the decision topic before the request offsets are committed.

Guarantees:

- at-least-once (default): a batch's decisions (and dead letters) are handed to a delivery
  task (produce until acknowledged, mark the requests answered, commit) while the next batch
  is fetched; at most :data:`MAX_DELIVERIES` are in flight (backpressure: no fetching beyond
  that, the reader stops prefetching). Commits never pass an unanswered request
  (:class:`~rune.streams.offsets.OffsetTracker`); at most one commit is in flight.
- exactly-once (``kafka.exactly_once``): deliveries run one at a time, each one transaction
  holding the decisions, the dead letters and the request offsets (``produce_committing``);
  an aborted transaction is run again while this instance still owns the partitions.

Requests with a consistency token wait (bounded) in a waiting room served by a second task,
so requests without a token are never held up by them. A rebalance that takes partitions
away drops their waiting requests (the new owner answers them).

Bad input never stops the stage: a record over ``stream.max_request_bytes`` is denied unread
(when its id can be found) or dead-lettered; undecodable JSON or a missing id is
dead-lettered; any other fault while deciding becomes a deny with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any, Final

import orjson

from rune.connectors.base import TP, DeliveryError, Outgoing, Reader, Record
from rune.jsonbytes import loads_numbers
from rune.policies.decision import Decision
from rune.policies.requests import read_id
from rune.streams.consistency import TokenError, WaitingRoom, parse_token, satisfied
from rune.streams.context import Context
from rune.streams.dlq import DeadLetters, Letter
from rune.streams.faults import contained
from rune.streams.offsets import OffsetTracker
from rune.streams.outbox import Outbox, slim
from rune.streams.retry import Backoff

__all__ = ["MAX_DELIVERIES", "Responder"]

MAX_DELIVERIES: Final = 8
_ID: Final = re.compile(rb'"id"\s*:\s*"([^"\\]{1,256})"')
"""Finds the id of a request too large to parse (only an unescaped id is recognised)."""

Answer = tuple[Record, dict[str, Any]]
Refusal = tuple[Record, object, str]
"""``(record, request or its readable id holder, error)``: answered with a deny."""


class Responder:
    def __init__(self, ctx: Context, outbox: Outbox, dead_letters: DeadLetters) -> None:
        self.ctx = ctx
        self.outbox = outbox
        self.dead_letters = dead_letters
        self.tracker = OffsetTracker()
        self.waiting = WaitingRoom()
        self._reader: Reader | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self._committing: asyncio.Task[None] | None = None
        self._commit_again = False
        self._in_order = asyncio.Lock()
        self._ingested = frozenset({ctx.settings.topics.facts, ctx.settings.topics.policies})

    @property
    def exactly_once(self) -> bool:
        return self.ctx.settings.kafka.exactly_once and self.ctx.log.transactional

    async def open(self) -> None:
        s = self.ctx.settings
        self._reader = await self.ctx.log.subscribe(
            s.topics.requests, s.kafka.group_id, batch=s.stream.serve_batch,
            on_revoke=self._revoked,
        )  # fmt: skip

    def _revoked(self, partitions: list[TP]) -> None:
        self.tracker.forget(partitions)
        dropped = self.waiting.drop(partitions)
        if dropped:
            self.ctx.notice(f"rebalance: {dropped} waiting request(s) left to the new owner")

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
        """Stop: deliveries still in flight after ``stream.shutdown_timeout_s`` are given up
        (their requests stay uncommitted), then the reader commits and leaves the group."""
        if self._deliveries or self._committing is not None:
            timeout = self.ctx.settings.stream.shutdown_timeout_s
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.drain(), timeout)
            for task in list(self._deliveries):
                task.cancel()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()

    @property
    def opened(self) -> bool:
        return self._reader is not None

    async def positions(self) -> dict[TP, int]:
        assert self._reader is not None
        return await self._reader.positions()

    @property
    def idle(self) -> bool:
        return not len(self.waiting) and not self.tracker.in_flight

    # -- fetching and sorting -------------------------------------------------------------

    async def poll(self) -> int:
        """Fetch one batch of requests and answer those that need not wait."""
        assert self._reader is not None
        s = self.ctx.settings.stream
        records = await self._reader.fetch(s.serve_batch, s.poll_timeout_s)
        if not records:
            return 0
        self.tracker.fetched(((r.topic, r.partition), r.offset) for r in records)
        self.ctx.stats.requests += len(records)
        answer: list[Answer] = []
        refused: list[Refusal] = []
        dead: list[Letter] = []
        for record in records:
            try:
                self._sort(record, answer, refused, dead)
            except Exception as exc:  # a bug: contained to this record
                error = contained(self.ctx, "serve", record.where, exc)
                rid = _readable_id(record.value)
                if rid is not None:
                    refused.append((record, {"id": rid}, error))
                else:
                    dead.append((record, "serve", error))
        await self._answer(answer, refused, dead)
        return len(records)

    def _sort(
        self, record: Record, answer: list[Answer], refused: list[Refusal], dead: list[Letter]
    ) -> None:
        ctx = self.ctx
        s = ctx.settings
        value = record.value
        if value is None:
            dead.append((record, "serve", "request record without a value"))
            return
        if len(value) > s.stream.max_request_bytes:
            error = f"request of {len(value)} bytes exceeds {s.stream.max_request_bytes} bytes"
            rid = _readable_id(value)
            if rid is None:
                dead.append((record, "serve", error))
            else:
                refused.append((record, {"id": rid}, error))
            return
        try:
            request = loads_numbers(value)
        except orjson.JSONDecodeError as exc:
            dead.append((record, "serve", f"invalid JSON: {exc}"))
            return
        if read_id(request, s.server.max_id_chars) is None:
            dead.append((record, "serve", "request without a readable id"))
            return
        assert isinstance(request, dict)
        try:
            token = parse_token(request, self._ingested)
        except TokenError as exc:
            refused.append((record, request, f"bad consistency token: {exc}"))
            return
        if token is None or satisfied(token, ctx.authorizer.watermark):
            answer.append((record, _without_token(request)))
        elif len(self.waiting) >= s.stream.max_waiting:
            refused.append((record, request, "too many requests wait for consistency tokens"))
        else:
            self.waiting.add(record, request, token, time.monotonic() + s.stream.token_wait_s)
            ctx.progress.set()  # wake the waiter: a new deadline

    async def serve_waiting(self) -> None:
        """Answer waiting requests whose tokens are satisfied or whose wait expired."""
        ready, expired = self.waiting.take(self.ctx.authorizer.watermark, time.monotonic())
        if ready or expired:
            wait = self.ctx.settings.stream.token_wait_s
            await self._answer(
                [(w.record, _without_token(w.request)) for w in ready],
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

    # -- deciding -------------------------------------------------------------------------

    def _decide(self, answer: list[Answer]) -> list[Decision]:
        az = self.ctx.authorizer
        requests = [req for _, req in answer]
        try:
            return az.decide_batch(requests)
        except Exception as exc:  # a bug: find the request that trips it, answer the rest
            contained(self.ctx, "serve", answer[0][0].where, exc)
        out: list[Decision] = []
        for record, request in answer:
            try:
                out.extend(az.decide_batch([request]))
            except Exception as exc:
                out.append(az.refuse(request, contained(self.ctx, "serve", record.where, exc)))
        return out

    async def _answer(
        self, answer: list[Answer], refused: list[Refusal], dead: list[Letter]
    ) -> None:
        ctx = self.ctx
        self._raise_failure()
        decisions = self._decide(answer) if answer else []
        decisions.extend(ctx.authorizer.refuse(request, error) for _, request, error in refused)
        requests = [req for _, req in answer] + [req for _, req, _ in refused]
        _, out = self.outbox.records(requests, decisions, "kafka")
        letters = self.dead_letters.select(dead)
        out.extend(self.dead_letters.encode(*letter) for letter in letters)
        records = [r for r, _ in answer] + [r for r, _, _ in refused] + [r for r, _, _ in dead]
        stats = (len(decisions), len(refused), len(letters))
        deliver = self._deliver_exactly_once if self.exactly_once else self._deliver
        delivery = asyncio.create_task(deliver(out, records, stats))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        limit = 1 if self.exactly_once else MAX_DELIVERIES
        if len(self._deliveries) >= limit:  # backpressure: fetch nothing more meanwhile
            await asyncio.wait(list(self._deliveries), return_when="FIRST_COMPLETED")
            self._raise_failure()

    # -- delivering -----------------------------------------------------------------------

    def _delivered(self, records: list[Record], stats: tuple[int, int, int]) -> None:
        s = self.ctx.stats
        s.decisions += stats[0]
        s.stale += stats[1]
        s.dead_letters += stats[2]

    async def _deliver(
        self, out: list[Outgoing], records: list[Record], stats: tuple[int, int, int]
    ) -> None:
        """At-least-once: produce until acknowledged, then mark answered and commit."""
        try:
            await self.outbox.deliver(out)
        except BaseException as exc:  # surfaced by the serve loop's next step
            self._failure = self._failure or exc
            return
        self._delivered(records, stats)
        self.tracker.done(((r.topic, r.partition), r.offset) for r in records)
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_loop())
        else:
            self._commit_again = True

    async def _deliver_exactly_once(
        self, out: list[Outgoing], records: list[Record], stats: tuple[int, int, int]
    ) -> None:
        """One transaction: the records and the offsets they let the group commit."""
        ctx = self.ctx
        assert self._reader is not None
        items = [((r.topic, r.partition), r.offset) for r in records]
        backoff = Backoff(ctx.settings.stream.retry_backoff_max_s)
        try:
            async with self._in_order:
                while True:
                    if not any(self.tracker.owns(tp) for tp, _ in items):
                        return  # every partition went to another instance: it answers
                    offsets = self.tracker.committable(items)
                    try:
                        await ctx.log.produce_committing(out, self._reader, offsets)
                        break
                    except DeliveryError as exc:
                        ctx.metrics.delivery_retries.inc(len(exc.failed))
                        if ctx.stopping.is_set():
                            raise
                        if not exc.retriable:
                            refused = set(exc.failed)
                            out = [slim(r) if r in refused else r for r in out]
                        ctx.notice(f"decision transaction failed, running it again: {exc}")
                        await backoff.wait(ctx.stopping)
        except BaseException as exc:  # surfaced by the serve loop's next step
            self._failure = self._failure or exc
            return
        self._delivered(records, stats)
        self.tracker.done(items)
        self.tracker.mark_committed(offsets)

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
        await self._reader.commit(offsets)
        self.tracker.mark_committed(offsets)


def _readable_id(value: bytes | None) -> str | None:
    """The id of a request that is not parsed (too large, or a bug while reading it)."""
    if value is None:
        return None
    found = _ID.search(value[:4096])
    return found.group(1).decode("utf-8", "replace") if found else None


def _without_token(request: dict[str, Any]) -> dict[str, Any]:
    """The request as the authorizer takes it (``consistency`` is the service's)."""
    if "consistency" not in request:
        return request
    return {k: v for k, v in request.items() if k != "consistency"}
