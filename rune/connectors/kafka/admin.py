"""Topics and offsets through librdkafka's ``AdminClient``: every call returns futures that
librdkafka completes in its own thread, awaited here without blocking the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Final, TypeVar

from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from rune.connectors.base import TP, ConnectorError, TopicSpec

__all__ = ["Admin"]

T = TypeVar("T")
PARTITIONS_TTL_S: Final = 30.0


async def _wait(future: Future[T], what: str) -> T:
    try:
        return await asyncio.wrap_future(future)
    except KafkaException as exc:
        raise ConnectorError(f"{what}: {exc.args[0].str()}") from None


class Admin:
    def __init__(self, config: dict[str, Any], timeout_s: float) -> None:
        self._client = AdminClient(config)
        self._bootstrap = str(config.get("bootstrap.servers", "?"))
        self._timeout_s = timeout_s
        self._partitions: dict[str, tuple[float, list[int]]] = {}

    async def describe(self, topic: str) -> list[tuple[int, int]]:
        """``(partition, leader id)`` of every partition of ``topic`` (leader -1: none)."""
        futures = self._client.describe_topics(
            TopicCollection([topic]), request_timeout=self._timeout_s
        )
        info = await _wait(futures[topic], f"describing topic {topic!r}")
        return sorted((p.id, p.leader.id if p.leader is not None else -1) for p in info.partitions)

    async def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic`` (cached for :data:`PARTITIONS_TTL_S`)."""
        cached = self._partitions.get(topic)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        try:
            ids = [p for p, _ in await self.describe(topic)]
        except ConnectorError:
            if cached is not None:  # partitions are only ever added: the old list is usable
                return cached[1]
            raise
        self._partitions[topic] = (time.monotonic() + PARTITIONS_TTL_S, ids)
        return ids

    async def ensure_topics(self, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> None:
        """Create missing topics, then wait until every partition of each has a leader."""
        existing = await asyncio.to_thread(self._list_topics)
        missing = [s for s in specs if s.name not in existing]
        if missing:
            futures = self._client.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication, config=dict(s.configs))
                    for s in missing
                ],
                request_timeout=self._timeout_s,
            )
            for name, future in futures.items():
                try:
                    await asyncio.wrap_future(future)
                except KafkaException as exc:
                    err: KafkaError = exc.args[0]
                    if err.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise ConnectorError(f"creating topic {name!r}: {err.str()}") from None
        deadline = time.monotonic() + timeout_s
        for spec in specs:
            while True:
                try:
                    parts = await self.describe(spec.name)
                except ConnectorError:
                    parts = []
                if parts and all(leader >= 0 for _, leader in parts):
                    break
                if time.monotonic() > deadline:
                    raise ConnectorError(f"topic {spec.name} has no leader: {parts}")
                await asyncio.sleep(0.05)

    async def topic_state(
        self, names: Sequence[str]
    ) -> dict[str, tuple[int, dict[str, str]] | None]:
        """Per topic: partition count and every config value the broker reports, or None
        when the topic does not exist."""
        existing = await asyncio.to_thread(self._list_topics)
        out: dict[str, tuple[int, dict[str, str]] | None] = dict.fromkeys(names)
        present = [n for n in names if n in existing]
        if not present:
            return out
        futures = self._client.describe_configs(
            [ConfigResource(ResourceType.TOPIC, n) for n in present],
            request_timeout=self._timeout_s,
        )
        configs: dict[str, dict[str, str]] = {}
        for resource, future in futures.items():
            entries = await _wait(future, f"describing the configs of {resource.name!r}")
            configs[resource.name] = {k: e.value for k, e in entries.items()}
        for name in present:
            out[name] = (len(await self.partitions(name)), configs.get(name, {}))
        return out

    def _list_topics(self) -> set[str]:
        try:
            meta = self._client.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            err = exc.args[0].str()
            raise ConnectorError(f"cannot connect to Kafka at {self._bootstrap}: {err}") from None
        return set(meta.topics)

    async def end_offsets(self, topics: Sequence[str]) -> dict[TP, int]:
        tps = [TopicPartition(t, p) for t in topics for p in await self.partitions(t)]
        if not tps:
            return {}
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
        futures = self._client.list_offsets(
            dict.fromkeys(tps, latest), request_timeout=self._timeout_s
        )
        out: dict[TP, int] = {}
        for tp, future in futures.items():
            info = await _wait(future, f"end offset of {tp.topic}[{tp.partition}]")
            out[(tp.topic, tp.partition)] = info.offset
        return out
