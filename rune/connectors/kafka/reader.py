"""The consumer side: one thread per reader owns a librdkafka consumer and hands batches of
records to the event loop.

librdkafka consumers are not thread-safe (confluent-kafka serializes calls: a second thread
waits while one is inside ``poll``), so every call on the consumer happens in its thread:
fetching (``poll`` for the first record, then ``consume(n, 0)`` for what is already there),
commits, positions, closing. The loop talks to the thread through a command queue and gets
batches through an ``asyncio.Queue`` bounded by a semaphore: when :data:`HANDOFF_BATCHES`
batches wait for the loop, the thread stops fetching (backpressure; librdkafka's own prefetch
is bounded by ``queued.max.messages.kbytes``) and only serves commands.

Errors on fetch: transient ones (broker away, rebalance, ``max.poll.interval.ms`` exceeded
after a long backpressure) are reported through ``on_notice`` and ridden out; fatal ones
(authorization, a fenced or failed client, a topic gone for longer than
:data:`MISSING_TOPIC_GRACE_S`) make the next ``fetch`` raise :class:`FatalLogError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from rune.connectors.base import TP, FatalLogError, Record
from rune.connectors.kafka import codes
from rune.connectors.kafka.producer import BrokerState, fatal_error

__all__ = ["KafkaReader"]

HANDOFF_BATCHES: Final = 2
POLL_S: Final = 0.02
"""Longest a command (commit, close) waits for the thread to come back from ``poll``."""
MISSING_TOPIC_GRACE_S: Final = 30.0
_MISSING: Final = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, codes.UNKNOWN_TOPIC})


class _Batch:
    __slots__ = ("group_metadata", "records")

    def __init__(self, records: list[Record], group_metadata: object | None) -> None:
        self.records = records
        self.group_metadata = group_metadata


class KafkaReader:
    """A :class:`~rune.connectors.base.Reader` over one librdkafka consumer.

    ``assign``: all partitions of the given topics from the beginning (no group);
    ``subscribe``: one topic through a consumer group (cooperative-sticky). ``on_revoke`` is
    called on the loop with the partitions a rebalance took away.
    """

    def __init__(
        self,
        config: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        *,
        batch: int,
        assign: Sequence[TP] = (),
        subscribe: str | None = None,
        state: BrokerState | None = None,
        on_notice: Callable[[str], None] = lambda message: None,
        on_revoke: Callable[[list[TP]], None] = lambda partitions: None,
    ) -> None:
        self._loop = loop
        self._batch = batch
        self._state = state
        self._notice = on_notice
        self._on_revoke = on_revoke
        self._grouped = subscribe is not None
        self._consumer = Consumer({**config, "error_cb": self._on_error})
        self._queue: asyncio.Queue[_Batch] = asyncio.Queue()
        self._slots = threading.Semaphore(HANDOFF_BATCHES)
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._closing = threading.Event()
        self._positions: dict[TP, int] = {}
        self._rest: list[Record] = []
        self._failure: FatalLogError | None = None
        self._missing_since: float | None = None
        self._done: dict[TP, int] = {}
        """Latest offsets the loop asked to commit (read by the thread at revocation)."""
        self.group_metadata: object | None = None
        if subscribe is not None:
            self._consumer.subscribe(
                [subscribe], on_assign=self._assigned, on_revoke=self._revoked,
                on_lost=self._revoked,
            )  # fmt: skip
        else:
            self._consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in assign])
            self._positions = {tp: -1 for tp in assign}
        name = "rune-group-reader" if subscribe is not None else "rune-assigned-reader"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the thread ---------------------------------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        if self._state is not None:
            self._state.on_error(err)
        if fatal_error(err):
            self._fail(f"Kafka consumer: {err.str()}")

    def _fail(self, message: str) -> None:
        if self._failure is None:
            self._failure = FatalLogError(message)
            self._loop.call_soon_threadsafe(self._queue.put_nowait, _Batch([], None))

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                self._serve_commands()
                if not self._slots.acquire(timeout=POLL_S):
                    continue  # the loop has enough to do: fetch nothing, serve commands
                records = self._fetch()
                if records:
                    meta = self._consumer.consumer_group_metadata() if self._grouped else None
                    self._loop.call_soon_threadsafe(self._queue.put_nowait, _Batch(records, meta))
                else:
                    self._slots.release()
        except Exception as exc:  # a bug or a dead client: the reader cannot go on
            self._fail(f"Kafka reader stopped: {type(exc).__name__}: {exc}")
        finally:
            self._serve_commands()

    def _serve_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _fetch(self) -> list[Record]:
        consumer = self._consumer
        first = consumer.poll(POLL_S)
        if first is None:
            return []
        messages = [first, *consumer.consume(self._batch - 1, 0)] if self._batch > 1 else [first]
        out: list[Record] = []
        positions = self._positions
        for m in messages:
            err = m.error()
            if err is not None:
                self._on_message_error(err, m)
                continue
            tp = (m.topic(), m.partition())
            offset = m.offset()
            out.append(Record(tp[0], tp[1], offset, m.key(), m.value()))  # type: ignore[arg-type]
            positions[tp] = offset + 1  # type: ignore[index,operator]
        if out:
            self._missing_since = None
            if self._state is not None:
                self._state.up = True
        return out

    def _on_message_error(self, err: KafkaError, m: Message) -> None:
        code = err.code()
        if code == codes.PARTITION_EOF:
            self._positions[(m.topic(), m.partition())] = m.offset() or 0  # type: ignore[index]
            return
        if fatal_error(err):
            self._fail(f"Kafka consumer: {err.str()}")
            return
        if code in _MISSING:
            now = time.monotonic()
            self._missing_since = self._missing_since or now
            if now - self._missing_since >= MISSING_TOPIC_GRACE_S:
                self._fail(f"Kafka consumer: topic {m.topic()!r} is gone: {err.str()}")
                return
        if self._state is not None:
            self._state.on_error(err)  # noticed, at most every few seconds per kind

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.setdefault((tp.topic, tp.partition), -1)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in partitions]
        done = {tp: off for tp, off in self._done.items() if tp in set(gone)}
        if done:  # what was answered on those partitions, so the next owner starts after it
            with contextlib.suppress(KafkaException):
                consumer.commit(
                    offsets=[TopicPartition(t, p, off) for (t, p), off in done.items()],
                    asynchronous=False,
                )
        for tp in gone:
            self._positions.pop(tp, None)
        self._loop.call_soon_threadsafe(self._on_revoke, gone)

    # -- the loop's side ----------------------------------------------------------------

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._rest:
            out, self._rest = self._rest[:max_records], self._rest[max_records:]
            return out
        try:
            batch = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            try:
                batch = await asyncio.wait_for(self._queue.get(), timeout_s)
            except TimeoutError:
                return []
        if self._failure is not None:
            raise self._failure
        self._slots.release()
        if batch.group_metadata is not None:
            self.group_metadata = batch.group_metadata
        records = batch.records
        if len(records) > max_records:
            records, self._rest = records[:max_records], records[max_records:]
        return records

    async def positions(self) -> dict[TP, int]:
        return {tp: off for tp, off in dict(self._positions).items() if off >= 0}

    def _call(self, work: Callable[[], Any]) -> asyncio.Future[Any]:
        """Run ``work`` in the reader's thread; the future completes on the loop."""
        future: asyncio.Future[Any] = self._loop.create_future()

        def run() -> None:
            try:
                result = work()
            except BaseException as exc:  # handed to the awaiting coroutine
                self._loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                self._loop.call_soon_threadsafe(_settle, future, result, None)

        self._commands.put(run)
        if not self._thread.is_alive():  # closed: nobody would serve it
            self._serve_commands()
        return future

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit asynchronously (librdkafka sends it; a failure is logged and the next
        commit supersedes it); partitions not assigned any more are left out."""
        if not self._grouped or not offsets:
            return
        self._done = {**self._done, **offsets}
        consumer = self._consumer

        def work() -> None:
            assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            todo = [TopicPartition(t, p, o) for (t, p), o in offsets.items() if (t, p) in assigned]
            if todo:
                try:
                    consumer.commit(offsets=todo, asynchronous=True)
                except KafkaException as exc:
                    self._notice(f"commit skipped: {exc}")

        await self._call(work)

    async def committed(self) -> dict[TP, int]:
        """The group's committed offsets of the assigned partitions (``-1001``: none)."""
        consumer = self._consumer

        def work() -> dict[TP, int]:
            parts = consumer.committed(consumer.assignment(), timeout=10)
            return {(tp.topic, tp.partition): tp.offset for tp in parts}

        result: dict[TP, int] = await self._call(work)
        return result

    async def close(self) -> None:
        """Commit the last offsets handed to :meth:`commit` (synchronously), leave the group
        and stop the thread."""
        if self._closing.is_set():
            return
        consumer = self._consumer
        done = dict(self._done)

        def work() -> None:
            try:
                if self._grouped and done:
                    assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
                    todo = [
                        TopicPartition(t, p, o) for (t, p), o in done.items() if (t, p) in assigned
                    ]
                    if todo:
                        consumer.commit(offsets=todo, asynchronous=False)
            except KafkaException as exc:
                self._notice(f"final commit failed: {exc}")
            finally:
                self._closing.set()

        with contextlib.suppress(Exception):
            await self._call(work)
        self._closing.set()
        await asyncio.to_thread(self._thread.join)
        with contextlib.suppress(KafkaException, RuntimeError):
            await asyncio.to_thread(consumer.close)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
