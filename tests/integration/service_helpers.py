"""Helpers for service tests against the real broker: topics, a client, running services."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from rune.config import Settings, Topics, load_settings
from rune.connectors.kafka import KafkaLog
from rune.streams import Service, event_key

TopicFactory = Callable[..., Awaitable[str]]
DEADLINE_S = 30.0
COMPACT = {"cleanup.policy": "compact"}


async def make_topics(kafka_topics: TopicFactory, partitions: int = 2) -> Topics:
    return Topics(
        facts=await kafka_topics(partitions=partitions, configs=COMPACT, prefix="facts"),
        policies=await kafka_topics(partitions=1, configs=COMPACT, prefix="policies"),
        requests=await kafka_topics(partitions=partitions, prefix="requests"),
        decisions=await kafka_topics(partitions=partitions, prefix="decisions"),
        changes=await kafka_topics(partitions=partitions, configs=COMPACT, prefix="changes"),
        dlq=await kafka_topics(partitions=1, prefix="dlq"),
        state=await kafka_topics(partitions=1, configs=COMPACT, prefix="state"),
    )


def settings_for(bootstrap: str, topics: Topics, partitions: int = 3, **stream: Any) -> Settings:
    group = f"rune-test-{topics.requests[-12:]}"
    kafka = {"bootstrap": bootstrap, "group_id": group, "partitions": partitions}
    return load_settings(None, {"kafka": kafka, "topics": topics.model_dump(), "stream": stream})


class Client:
    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, topic: str, value: bytes | None, key: bytes | None = None) -> Any:
        return await self.producer.send_and_wait(topic, value, key=key)

    async def event(self, event: dict[str, Any]) -> dict[str, dict[str, int]]:
        """Produce a fact event keyed by its fact; returns its consistency token."""
        meta = await self.send(self.topics.facts, orjson.dumps(event), event_key(event))
        return {self.topics.facts: {str(meta.partition): meta.offset}}

    async def tombstone(self, event: dict[str, Any]) -> dict[str, dict[str, int]]:
        meta = await self.send(self.topics.facts, None, event_key(event))
        return {self.topics.facts: {str(meta.partition): meta.offset}}

    async def bundle(self, bundle: dict[str, Any] | bytes) -> None:
        value = bundle if isinstance(bundle, bytes) else orjson.dumps(bundle)
        await self.send(self.topics.policies, value, b"default")

    async def request(self, request: dict[str, Any]) -> None:
        await self.send(self.topics.requests, orjson.dumps(request), request["id"].encode())

    async def read_all(
        self, topic: str, done: Callable[[list[Any]], bool], deadline_s: float = DEADLINE_S
    ) -> list[Any]:
        """Read ``topic`` from the beginning until ``done(records)`` (or fail at the deadline)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            records: list[Any] = []
            deadline = time.monotonic() + deadline_s
            while not done(records):
                assert time.monotonic() < deadline, (
                    f"{topic}: condition not met, {len(records)} records"
                )
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()

    async def decisions(
        self, ids: set[str], deadline_s: float = DEADLINE_S
    ) -> dict[str, dict[str, Any]]:
        def done(records: list[Any]) -> bool:
            return ids <= {orjson.loads(r.value)["id"] for r in records}

        records = await self.read_all(self.topics.decisions, done, deadline_s)
        out: dict[str, dict[str, Any]] = {}
        for r in records:
            d = orjson.loads(r.value)
            out[d["id"]] = d
        return out


@asynccontextmanager
async def client(bootstrap: str, topics: Topics) -> AsyncIterator[Client]:
    c = Client(bootstrap, topics)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[Service]:
    svc = Service(settings, KafkaLog(settings.kafka.bootstrap), notice=lambda m: None)
    task = asyncio.create_task(svc.run())
    ready = asyncio.create_task(svc.ctx.ready.wait())
    await asyncio.wait([task, ready], timeout=DEADLINE_S, return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    assert svc.ctx.ready.is_set(), "service not ready in time"
    try:
        yield svc
    finally:
        svc.stop()
        await asyncio.wait_for(task, 20)
