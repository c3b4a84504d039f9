"""Kafka through aiokafka: admin (topics), manual-assignment readers, group readers, an
idempotent producer whose produce returns once the broker acknowledged every record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from rune.connectors.base import ConnectorError, Outgoing, Position, Record, TopicSpec

__all__ = ["KafkaLog", "KafkaReader"]

_TOPIC_ALREADY_EXISTS = 36
MAX_BATCH_BYTES = 512 * 1024
"""Bytes of one produced batch (the broker's message.max.bytes defaults to 1 MiB)."""


class KafkaLog:
    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str = "rune",
        isolation_level: str = "read_uncommitted",
        linger_ms: int = 0,
        request_timeout_ms: int = 15000,
    ) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._isolation = isolation_level
        self._linger_ms = linger_ms
        self._timeout_ms = request_timeout_ms
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._meta: AIOKafkaConsumer | None = None
        self._partitions_cache: dict[str, tuple[float, list[int]]] = {}
        self._round_robin = 0

    async def start(self) -> None:
        try:
            self._admin = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                request_timeout_ms=self._timeout_ms,
            )
            await self._admin.start()
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                enable_idempotence=True,
                acks="all",
                linger_ms=self._linger_ms,
                request_timeout_ms=self._timeout_ms,
                # few, large batches: aiokafka queues one batch per partition at a time, and
                # its wait for a free slot is bounded by request_timeout in total
                max_batch_size=MAX_BATCH_BYTES,
            )
            await self._producer.start()
            self._meta = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                enable_auto_commit=False,
                isolation_level=self._isolation,
            )
            await self._meta.start()
        except KafkaError as exc:
            await self.close()
            raise ConnectorError(f"cannot connect to Kafka at {self._bootstrap}: {exc}") from exc

    async def close(self) -> None:
        for client in (self._producer, self._meta, self._admin):
            if client is not None:
                try:
                    if isinstance(client, AIOKafkaAdminClient):
                        await client.close()
                    else:
                        await client.stop()
                except KafkaError:
                    pass
        self._producer = self._meta = self._admin = None

    def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise ConnectorError("the Kafka log is not started")
        return self._admin

    async def _partitions(self, topic: str) -> list[int]:
        described = await self._admin_client().describe_topics([topic])
        info = next((t for t in described if t["topic"] == topic), None)
        if info is None or info["error_code"] != 0:
            raise ConnectorError(f"topic {topic!r} is not available: {info}")
        return sorted(p["partition"] for p in info["partitions"])

    async def ensure_topics(self, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> None:
        admin = self._admin_client()
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.configs))
                    for s in missing
                ]
            )
            errors = [
                e
                for e in response.to_object()["topic_errors"]
                if e["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
            ]
            if errors:
                raise ConnectorError(f"creating topics failed: {errors}")
        deadline = time.monotonic() + timeout_s
        for spec in specs:
            while True:
                described = await admin.describe_topics([spec.name])
                info = next((t for t in described if t["topic"] == spec.name), None)
                if (
                    info is not None
                    and info["error_code"] == 0
                    and info["partitions"]
                    and all(p["leader"] >= 0 for p in info["partitions"])
                ):
                    break
                if time.monotonic() > deadline:
                    raise ConnectorError(f"topic {spec.name} has no leader: {info}")
                await asyncio.sleep(0.05)

    async def end_offsets(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        assert self._meta is not None
        tps = [TopicPartition(t, p) for t in topics for p in await self._partitions(t)]
        ends = await self._meta.end_offsets(tps)
        return {(tp.topic, tp.partition): off for tp, off in ends.items()}

    def _consumer(self, **kw: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            enable_auto_commit=False,
            isolation_level=self._isolation,
            auto_offset_reset="earliest",
            request_timeout_ms=self._timeout_ms,
            **kw,
        )

    async def assign(self, topics: Sequence[str]) -> KafkaReader:
        tps = [TopicPartition(t, p) for t in topics for p in await self._partitions(t)]
        consumer = self._consumer()
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        return KafkaReader(consumer, grouped=False)

    async def subscribe(self, topic: str, group: str) -> KafkaReader:
        consumer = self._consumer(group_id=group)
        await consumer.start()
        consumer.subscribe([topic])
        return KafkaReader(consumer, grouped=True)

    async def produce(self, records: Sequence[Outgoing]) -> list[Position]:
        """Produce in explicit batches per partition (``send_batch``): keyed records go where
        Kafka's default partitioner puts them (murmur2 of the key, as Java clients do), so a
        key always lands in one partition of a compacted topic whoever produced it."""
        producer = self._producer
        if producer is None:
            raise ConnectorError("the Kafka log is not started")
        if not records:
            return []
        groups: dict[tuple[str, int], list[int]] = {}
        try:
            for i, r in enumerate(records):
                p = r.partition
                if p is None:
                    p = await self._partition(r.topic, r.key)
                groups.setdefault((r.topic, p), []).append(i)
            sent: list[tuple[asyncio.Future[Any], str, int, list[int]]] = []
            single: list[tuple[asyncio.Future[Any], int]] = []
            for (topic, p), indexes in groups.items():
                batch = producer.create_batch()
                members: list[int] = []
                for i in indexes:
                    r = records[i]
                    if batch.append(key=r.key, value=r.value, timestamp=None) is not None:
                        members.append(i)
                        continue
                    if members:  # the batch is full: send it, start the next
                        future = await producer.send_batch(batch, topic, partition=p)
                        sent.append((future, topic, p, members))
                        batch, members = producer.create_batch(), []
                        if batch.append(key=r.key, value=r.value, timestamp=None) is not None:
                            members.append(i)
                            continue
                    # larger than a batch: aiokafka sizes a batch for this record alone
                    single.append((await producer.send(topic, r.value, key=r.key, partition=p), i))
                if members:
                    sent.append((await producer.send_batch(batch, topic, partition=p), topic, p,
                                 members))  # fmt: skip
            positions: list[Position | None] = [None] * len(records)
            for future, topic, p, members in sent:
                base = (await future).offset
                for k, i in enumerate(members):
                    positions[i] = Position(topic, p, base + k)
            for future, i in single:
                meta = await future
                positions[i] = Position(meta.topic, meta.partition, meta.offset)
        except KafkaError as exc:
            raise ConnectorError(f"produce failed: {exc}") from exc
        return [pos for pos in positions if pos is not None]

    async def _partition(self, topic: str, key: bytes | None) -> int:
        parts = self._partitions_cache.get(topic)
        if parts is None or time.monotonic() > parts[0]:
            assert self._producer is not None
            ids = sorted(await self._producer.partitions_for(topic))
            parts = self._partitions_cache[topic] = (time.monotonic() + 30.0, ids)
        ids = parts[1]
        if key is None:
            self._round_robin += 1
            return ids[self._round_robin % len(ids)]
        return ids[(int(murmur2(key)) & 0x7FFFFFFF) % len(ids)]


class KafkaReader:
    def __init__(self, consumer: AIOKafkaConsumer, grouped: bool) -> None:
        self._consumer = consumer
        self._grouped = grouped

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        batches = await self._consumer.getmany(
            timeout_ms=int(timeout_s * 1000), max_records=max_records
        )
        out: list[Record] = []
        for tp, records in batches.items():
            out.extend(Record(tp.topic, tp.partition, r.offset, r.key, r.value) for r in records)
        return out

    async def positions(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = {}
        for tp in self._consumer.assignment():
            out[(tp.topic, tp.partition)] = await self._consumer.position(tp)
        return out

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if not self._grouped or not offsets:
            return
        assigned = self._consumer.assignment()
        todo = {
            TopicPartition(t, p): off
            for (t, p), off in offsets.items()
            if TopicPartition(t, p) in assigned
        }
        if not todo:
            return
        try:
            await self._consumer.commit(todo)
        except KafkaError as exc:  # rebalanced meanwhile: the new owner answers again
            raise ConnectorError(f"commit failed: {exc}") from exc

    async def close(self) -> None:
        await self._consumer.stop()
