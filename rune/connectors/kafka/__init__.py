"""Kafka through librdkafka (``confluent-kafka``): the :class:`KafkaLog` behind the service's
``Log`` interface.

- readers (``assign``, ``subscribe``): one consumer each, owned by a thread that hands batches
  to the event loop (:mod:`.reader`);
- producing: one idempotent producer (``acks=all``, Java-compatible murmur2 placement) whose
  delivery reports a thread serves (:mod:`.producer`); with ``exactly_once`` a second,
  transactional producer carries decisions and the request offsets in one transaction;
- topics and offsets: the ``AdminClient`` (:mod:`.admin`).

Faults: librdkafka reconnects and retries by itself; :meth:`KafkaLog.available` follows the
broker connections (statistics every second), :meth:`KafkaLog.failed` completes on a fatal
error (authorization, fenced producer, a topic gone). See docs/streaming.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from rune.connectors.base import (
    TP,
    ConnectorError,
    DeliveryError,
    FatalLogError,
    Outgoing,
    Position,
    Reader,
    TopicSpec,
)
from rune.connectors.kafka.admin import Admin
from rune.connectors.kafka.options import KafkaOptions
from rune.connectors.kafka.producer import BrokerState, DeliveryProducer, fatal_error
from rune.connectors.kafka.reader import KafkaReader

__all__ = ["KafkaLog", "KafkaOptions", "KafkaReader"]

CLOSE_TIMEOUT_S: Final = 10.0
TRANSACTION_RETRIES: Final = 3


class KafkaLog:
    """The service's log on a Kafka cluster."""

    def __init__(
        self, options: KafkaOptions | str, *, notice: Callable[[str], None] | None = None
    ) -> None:
        self.options = options if isinstance(options, KafkaOptions) else KafkaOptions(options)
        self._notice = notice or (lambda message: None)
        self._state = BrokerState(self._notice)
        self._admin: Admin | None = None
        self._producer: DeliveryProducer | None = None
        self._txn: DeliveryProducer | None = None
        self._txn_pool: ThreadPoolExecutor | None = None
        self._txn_lock = asyncio.Lock()
        self._readers: weakref.WeakSet[KafkaReader] = weakref.WeakSet()
        self._fatal: asyncio.Future[FatalLogError] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._fatal = loop.create_future()
        o = self.options
        try:
            self._admin = Admin(o.admin(), o.request_timeout_ms / 1000)
            self._producer = DeliveryProducer(o.producer(), loop, self._state, self._on_fatal)
            if o.exactly_once:
                self._txn_pool = ThreadPoolExecutor(1, thread_name_prefix="rune-transactions")
                self._txn = DeliveryProducer(
                    o.transactional_producer(), loop, None, self._on_fatal, "rune-transactions"
                )
                await self._in_txn_thread(self._txn.client.init_transactions, 30.0)
        except KafkaException as exc:
            await self.close()
            raise _error("starting the Kafka clients", exc.args[0]) from None

    def _on_fatal(self, failure: FatalLogError) -> None:
        if self._fatal is not None and not self._fatal.done():
            self._fatal.set_result(failure)

    async def close(self) -> None:
        for reader in list(self._readers):
            with contextlib.suppress(Exception):
                await reader.close()
        for producer in (self._txn, self._producer):
            if producer is not None:
                left = await producer.close(CLOSE_TIMEOUT_S)
                if left:
                    self._notice(f"Kafka: {left} record(s) not acknowledged at close")
        self._txn = self._producer = None
        if self._txn_pool is not None:
            self._txn_pool.shutdown(wait=False)
            self._txn_pool = None

    def available(self) -> bool:
        return self._state.up

    async def failed(self) -> FatalLogError:
        if self._fatal is None:
            raise ConnectorError("the Kafka log is not started")
        return await asyncio.shield(self._fatal)

    # -- topics and offsets ----------------------------------------------------------------

    def _admin_client(self) -> Admin:
        if self._admin is None:
            raise ConnectorError("the Kafka log is not started")
        return self._admin

    async def ensure_topics(self, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> None:
        await self._admin_client().ensure_topics(specs, timeout_s)
        self._state.up = True

    async def end_offsets(self, topics: Sequence[str]) -> dict[TP, int]:
        ends = await self._admin_client().end_offsets(topics)
        self._state.up = True
        return ends

    async def partitions(self, topic: str) -> list[int]:
        return await self._admin_client().partitions(topic)

    # -- reading ----------------------------------------------------------------------------

    async def assign(self, topics: Sequence[str], *, batch: int = 1000) -> KafkaReader:
        tps = [(t, p) for t in topics for p in await self.partitions(t)]
        reader = KafkaReader(
            self.options.consumer(None),
            asyncio.get_running_loop(),
            batch=batch,
            assign=tps,
            state=self._state,
            on_notice=self._notice,
        )
        self._readers.add(reader)
        return reader

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        batch: int = 1000,
        on_revoke: Callable[[list[TP]], None] | None = None,
    ) -> KafkaReader:
        reader = KafkaReader(
            self.options.consumer(group),
            asyncio.get_running_loop(),
            batch=batch,
            subscribe=topic,
            state=self._state,
            on_notice=self._notice,
            on_revoke=on_revoke or (lambda partitions: None),
        )
        self._readers.add(reader)
        return reader

    # -- producing ----------------------------------------------------------------------------

    def _plain(self) -> DeliveryProducer:
        if self._producer is None:
            raise ConnectorError("the Kafka log is not started")
        return self._producer

    async def produce(self, records: Sequence[Outgoing]) -> list[Position]:
        return await self._plain().send(records, positions=True)

    async def send(self, records: Sequence[Outgoing]) -> None:
        """Produce ``records`` and wait for their acknowledgements, without their positions
        (cheaper per record)."""
        await self._plain().send(records, positions=False)

    @property
    def transactional(self) -> bool:
        return self._txn is not None

    async def produce_committing(
        self, records: Sequence[Outgoing], reader: Reader, offsets: Mapping[TP, int]
    ) -> None:
        """Exactly-once: one transaction holding ``records`` and ``offsets`` (sent with the
        consumer group metadata of ``reader``, so a rebalance fences a stale owner). Raises
        :class:`DeliveryError` (retriable) when the transaction was aborted: nothing of it is
        visible to ``read_committed`` consumers and the caller may run it again."""
        txn = self._txn
        if txn is None:
            await self.send(records)
            await reader.commit(offsets)
            return
        if not isinstance(reader, KafkaReader) or reader.group_metadata is None:
            raise ConnectorError("a transaction needs a group reader that fetched records")
        client = txn.client
        parts = [TopicPartition(t, p, off) for (t, p), off in offsets.items()]
        async with self._txn_lock:
            batch = None
            try:
                client.begin_transaction()
                batch = await txn.start(records, positions=False) if records else None
                if parts:
                    await self._in_txn_thread(
                        client.send_offsets_to_transaction, parts, reader.group_metadata, 30.0
                    )
                await self._commit_transaction()
                if batch is not None:
                    await batch.future
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if fatal_error(err):
                    raise FatalLogError(f"Kafka transaction: {err.str()}") from None
                with contextlib.suppress(KafkaException):
                    await self._in_txn_thread(client.abort_transaction, 30.0)
                refused = _refused(batch)
                if refused is not None:  # a record the topic will never take
                    raise refused from None
                raise DeliveryError(
                    f"transaction aborted: {err.str()}", records, retriable=True
                ) from None

    async def _commit_transaction(self) -> None:
        assert self._txn is not None
        for attempt in range(TRANSACTION_RETRIES):
            try:
                await self._in_txn_thread(self._txn.client.commit_transaction, 30.0)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if not err.retriable() or attempt == TRANSACTION_RETRIES - 1:
                    raise

    async def _in_txn_thread(self, call: Callable[..., Any], *args: Any) -> Any:
        assert self._txn_pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._txn_pool, call, *args)


def _refused(batch: Any) -> DeliveryError | None:
    """The permanent delivery failure of an aborted transaction's batch, if that is why."""
    future = getattr(batch, "future", None)
    if future is None:
        return None
    if not future.done():  # purged by the abort later: nobody awaits it any more
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return None
    if future.cancelled():
        return None
    exc = future.exception()
    return exc if isinstance(exc, DeliveryError) and not exc.retriable else None


def _error(what: str, err: KafkaError) -> ConnectorError:
    cls = FatalLogError if fatal_error(err) else ConnectorError
    return cls(f"{what}: {err.str()}")
