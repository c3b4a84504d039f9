"""The producer side: a librdkafka producer whose delivery reports are served by a thread of
its own and handed to the event loop once per batch.

``send`` enqueues a batch (librdkafka copies the bytes; the call does not block) and returns
a future that completes when every record of the batch is acknowledged, with their positions,
or fails with :class:`DeliveryError` naming the records that were not. The per-record cost
on the Python side is one ``produce`` call and one small delivery callback.

Pitfalls: librdkafka retries on its own (idempotent producer: no duplicates, order kept per
partition) until ``message.timeout.ms``; with 0 it never gives up, so a broker that is away
only delays acknowledgements. A local queue that is full (``BufferError``) is waited out.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from rune.connectors.base import DeliveryError, FatalLogError, Outgoing, Position
from rune.connectors.kafka import codes

__all__ = ["BrokerState", "DeliveryProducer", "fatal_error"]

POLL_S: Final = 0.1
NOTICE_EVERY_S: Final = 10.0
QUEUE_FULL_BACKOFF_S: Final = 0.002

_PERMANENT: Final = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
    }
)
"""Errors of one record that producing it again cannot fix."""
_FATAL: Final = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        codes.AUTHENTICATION,
        codes.FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.UNKNOWN_TOPIC_OR_PART,  # a delivery fails so only after metadata waits
        codes.UNKNOWN_TOPIC,
    }
)


def fatal_error(err: KafkaError) -> bool:
    """Whether ``err`` means the client cannot go on (whatever librdkafka's flag says)."""
    return bool(err.fatal()) or err.code() in _FATAL


class BrokerState:
    """Whether some broker connection is up, from librdkafka's statistics and errors;
    written by client threads, read by the event loop (a bool swap is atomic). Client errors
    are passed to ``notice`` at most once per :data:`NOTICE_EVERY_S` per kind (librdkafka
    reports a broker that is away on every reconnection attempt)."""

    def __init__(self, notice: Callable[[str], None] = lambda message: None) -> None:
        self.up = False
        self.last_error: str | None = None
        self._notice = notice
        self._noticed: dict[int, float] = {}

    def on_stats(self, raw: str) -> None:
        try:
            brokers = orjson.loads(raw).get("brokers", {})
        except orjson.JSONDecodeError:
            return
        self.up = any(b.get("state") == "UP" for b in brokers.values())

    def on_error(self, err: KafkaError) -> None:
        self.last_error = err.str()
        code = err.code()
        if code in (codes.ALL_BROKERS_DOWN, codes.TRANSPORT):
            self.up = False
        now = time.monotonic()
        if now - self._noticed.get(code, -NOTICE_EVERY_S) >= NOTICE_EVERY_S:
            self._noticed[code] = now
            self._notice(f"Kafka: {err.str()}")


class _Batch:
    """One ``send``: counts acknowledgements in the thread that serves delivery reports,
    resolves on the loop.

    No lock: ``delivered`` is written by the reporting thread only, ``refusals`` and
    ``sealed`` by the loop only (while it hands the records to librdkafka). Whichever side
    sees ``sealed`` and the full count last resolves the future (both may: the second is a
    no-op)."""

    __slots__ = (
        "delivered", "failed", "future", "loop", "n", "positions", "refusals", "sealed", "why",
    )  # fmt: skip

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int, positions: bool) -> None:
        self.loop = loop
        self.future: asyncio.Future[list[Position]] = loop.create_future()
        self.n = n
        self.delivered = 0
        self.refusals = 0
        self.sealed = False
        self.positions: list[Position | None] = [None] * n if positions else []
        self.failed: list[tuple[int, Outgoing]] = []
        self.why: KafkaError | None = None

    def report(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._fail(-1, err, msg)
        self.delivered += 1
        if self.sealed and self.delivered + self.refusals == self.n:
            self.loop.call_soon_threadsafe(self._resolve)

    def report_at(self, i: int, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._fail(i, err, msg)
        else:
            self.positions[i] = Position(msg.topic(), msg.partition(), msg.offset())  # type: ignore[arg-type]
        self.delivered += 1
        if self.sealed and self.delivered + self.refusals == self.n:
            self.loop.call_soon_threadsafe(self._resolve)

    def _fail(self, i: int, err: KafkaError, msg: Message) -> None:
        part = msg.partition()
        known = part if part is not None and part >= 0 else None
        self.failed.append((i, Outgoing(msg.topic() or "", msg.key(), msg.value(), known)))
        if self.why is None or fatal_error(err) or err.retriable():
            self.why = err

    def refused(self, i: int, record: Outgoing, err: KafkaError) -> None:
        """librdkafka refused ``record`` at ``produce`` (no delivery report will come)."""
        self.failed.append((i, record))
        if self.why is None or fatal_error(err):
            self.why = err
        self.refusals += 1

    def seal(self) -> None:
        """Every record was handed over (on the loop): resolve if all were reported."""
        self.sealed = True
        if self.delivered + self.refusals == self.n:
            self._resolve()

    def _resolve(self) -> None:
        if self.future.done():
            return
        why = self.why
        if why is None:
            self.future.set_result(self.positions)  # type: ignore[arg-type]
            return
        failed = [out for _, out in sorted(self.failed, key=lambda f: f[0])]
        message = f"{len(failed)} record(s) not acknowledged: {why.str()}"
        if fatal_error(why):
            self.future.set_exception(FatalLogError(message))
        else:
            retriable = why.code() not in _PERMANENT
            self.future.set_exception(DeliveryError(message, failed, retriable=retriable))


class DeliveryProducer:
    """A librdkafka producer plus the thread that serves its callbacks."""

    def __init__(
        self,
        config: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        state: BrokerState | None,
        on_fatal: Callable[[FatalLogError], None],
        name: str = "rune-producer",
    ) -> None:
        self._loop = loop
        self._state = state
        self._on_fatal = on_fatal
        if state is not None:
            config = {**config, "stats_cb": state.on_stats}
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    @property
    def client(self) -> Producer:
        return self._producer

    def _on_error(self, err: KafkaError) -> None:  # a librdkafka thread or the poll thread
        if self._state is not None:
            self._state.on_error(err)
        if fatal_error(err):
            failure = FatalLogError(f"Kafka producer: {err.str()}")
            self._loop.call_soon_threadsafe(self._on_fatal, failure)

    def _serve(self) -> None:
        producer = self._producer
        while not self._closing.is_set():
            try:
                producer.poll(POLL_S)
            except KafkaException as exc:  # a fatal error raised through poll
                err: KafkaError = exc.args[0]
                self._on_error(err)
                if fatal_error(err):
                    return

    async def send(self, records: Sequence[Outgoing], *, positions: bool) -> list[Position]:
        """Produce ``records``; return their positions (if asked) once all are acknowledged."""
        if not records:
            return []
        batch = await self.start(records, positions=positions)
        return await batch.future

    async def start(self, records: Sequence[Outgoing], *, positions: bool) -> _Batch:
        """Hand every record of ``records`` to librdkafka (waiting while its queue is full)
        and return the batch whose ``future`` completes when all are acknowledged."""
        batch = _Batch(self._loop, len(records), positions)
        produce = self._producer.produce
        report = batch.report
        for i, (topic, key, value, partition) in enumerate(records):
            callback = functools.partial(batch.report_at, i) if positions else report
            while True:
                try:
                    if partition is None:
                        produce(topic, value, key, on_delivery=callback)
                    else:
                        produce(topic, value, key, partition, on_delivery=callback)
                    break
                except BufferError:  # librdkafka's queue is full: let deliveries drain it
                    await asyncio.sleep(QUEUE_FULL_BACKOFF_S)
                except KafkaException as exc:  # refused locally (e.g. larger than allowed)
                    batch.refused(i, records[i], exc.args[0])
                    break
        batch.seal()
        return batch

    def pending(self) -> int:
        """Records not yet acknowledged."""
        return len(self._producer)

    async def close(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for outstanding deliveries, then stop the poll thread;
        returns how many records were still unacknowledged."""
        self._closing.set()
        await asyncio.to_thread(self._thread.join)
        return await asyncio.to_thread(self._producer.flush, timeout_s)
