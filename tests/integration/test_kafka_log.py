"""The local broker behaves as the Kafka log RUNE builds on: compacted topics, keyed records,
tombstones, committed consumer-group offsets and transactions. No mocks: a real broker."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import ConsumerRecord

TopicFactory = Callable[
    ..., Awaitable[str]
]  # the kafka_topics fixture (tests/integration/conftest.py)

FETCH_DEADLINE_S = 20.0


async def fetch(
    consumer: AIOKafkaConsumer, count: int, deadline_s: float = FETCH_DEADLINE_S
) -> list[ConsumerRecord]:
    """Poll until ``count`` records arrived (or fail at the deadline); returns them in order."""
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + deadline_s
    while len(records) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"got {len(records)} of {count} records: {records}"
        batches = await consumer.getmany(timeout_ms=int(min(remaining, 1.0) * 1000))
        for batch in batches.values():
            records.extend(batch)
    return records


async def topic_config(admin: AIOKafkaAdminClient, topic: str, name: str) -> str:
    [response] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic, {name: None})]
    )
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    values = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
    return values[name]


async def test_compacted_topic_keyed_records_and_tombstone(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient, kafka_topics: TopicFactory
) -> None:
    topic = await kafka_topics(configs={"cleanup.policy": "compact"})
    assert await topic_config(kafka_admin, topic, "cleanup.policy") == "compact"

    writes: list[tuple[bytes, bytes | None]] = [
        (b"user:alice", b'{"role":"viewer"}'),
        (b"user:bob", b'{"role":"editor"}'),
        (b"user:alice", b'{"role":"admin"}'),
        (b"doc:42", b'{"owner":"bob"}'),
        (b"user:bob", None),  # tombstone: bob's entity is deleted
    ]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        offsets = []
        for key, value in writes:
            meta = await producer.send_and_wait(topic, value=value, key=key, partition=0)
            assert (meta.topic, meta.partition) == (topic, 0)
            offsets.append(meta.offset)
    finally:
        await producer.stop()
    assert offsets == [0, 1, 2, 3, 4]

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = await fetch(consumer, len(writes))
        assert await consumer.end_offsets([tp]) == {tp: 5}
    finally:
        await consumer.stop()

    assert [(r.offset, r.key, r.value) for r in records] == [
        (0, b"user:alice", b'{"role":"viewer"}'),
        (1, b"user:bob", b'{"role":"editor"}'),
        (2, b"user:alice", b'{"role":"admin"}'),
        (3, b"doc:42", b'{"owner":"bob"}'),
        (4, b"user:bob", None),
    ]
    assert all(r.topic == topic and r.partition == 0 for r in records)

    # Folding the log by key gives the compacted view a reader rebuilds its state from.
    state: dict[bytes, bytes] = {}
    for r in records:
        if r.value is None:
            state.pop(r.key, None)
        else:
            state[r.key] = r.value
    assert state == {b"user:alice": b'{"role":"admin"}', b"doc:42": b'{"owner":"bob"}'}


async def test_keys_route_to_stable_partitions(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topic = await kafka_topics(partitions=3, configs={"cleanup.policy": "compact"})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        placed: dict[bytes, set[int]] = {}
        for i in range(3):
            for key in (b"a", b"b", b"c", b"d"):
                meta = await producer.send_and_wait(topic, value=b"%d" % i, key=key)
                placed.setdefault(key, set()).add(meta.partition)
    finally:
        await producer.stop()
    assert all(len(partitions) == 1 for partitions in placed.values()), placed

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = await fetch(consumer, 12)
    finally:
        await consumer.stop()
    for key, [partition] in placed.items():
        values = [r.value for r in records if r.key == key]
        assert values == [b"0", b"1", b"2"]
        assert {r.partition for r in records if r.key == key} == {partition}


async def test_consumer_group_resumes_from_committed_offset(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topic = await kafka_topics()
    group = f"{topic}.group"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(4):
            await producer.send_and_wait(topic, value=b"v%d" % i, key=b"k", partition=0)
    finally:
        await producer.stop()

    tp = TopicPartition(topic, 0)
    first = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await first.start()
    try:
        records = await fetch(first, 4)
        assert [r.offset for r in records] == [0, 1, 2, 3]
        await first.commit({tp: 2})  # processed offsets 0 and 1 only
    finally:
        await first.stop()

    second = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await second.start()
    try:
        records = await fetch(second, 2)
        assert [(r.offset, r.value) for r in records] == [(2, b"v2"), (3, b"v3")]
        assert await second.committed(tp) == 2
    finally:
        await second.stop()


async def test_read_committed_sees_only_committed_transactions(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topic = await kafka_topics()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{topic}.txn")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, value=b"kept-1", key=b"k1", partition=0)
            await producer.send_and_wait(topic, value=b"kept-2", key=b"k2", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, value=b"dropped", key=b"k3", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, value=b"kept-3", key=b"k4", partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = await fetch(consumer, 3)
    finally:
        await consumer.stop()
    # Offsets: 0, 1 committed; 2 commit marker; 3 aborted; 4 abort marker; 5 committed.
    assert [(r.offset, r.key, r.value) for r in records] == [
        (0, b"k1", b"kept-1"),
        (1, b"k2", b"kept-2"),
        (5, b"k4", b"kept-3"),
    ]


async def test_batched_produce_places_keys_like_the_default_partitioner(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    """KafkaLog.produce builds its own batches; keyed records must still land where a plain
    client (the Java-compatible murmur2 partitioner) puts them, at the offsets returned, and
    a record larger than a batch goes too."""
    from rune.connectors.base import Outgoing
    from rune.connectors.kafka import KafkaLog

    topic = await kafka_topics(partitions=5)
    keys = [f"key-{i}".encode() for i in range(300)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    log = KafkaLog(kafka_bootstrap)
    await producer.start()
    await log.start()
    try:
        expected = {k: (await producer.send_and_wait(topic, b"x", key=k)).partition for k in keys}
        values = [b"v" * (i % 200) + b"%d" % i for i in range(len(keys))]
        values[7] = b"w" * 600_000  # larger than one produced batch (512 KiB)
        values[8] = b"z" * 300_000  # two of these do not fit one batch
        positions = await log.produce(
            [Outgoing(topic, k, v) for k, v in zip(keys, values, strict=True)]
            + [Outgoing(topic, None, b"keyless-%d" % i) for i in range(10)]
        )
    finally:
        await producer.stop()
        await log.close()
    assert [p.partition for p in positions[: len(keys)]] == [expected[k] for k in keys]
    assert len({(p.partition, p.offset) for p in positions}) == len(positions)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(5)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = await fetch(consumer, 2 * len(keys) + 10)
    finally:
        await consumer.stop()
    at = {(r.partition, r.offset): r.value for r in records}
    sent = [*values, *(b"keyless-%d" % i for i in range(10))]
    for pos, value in zip(positions, sent, strict=True):
        assert at[(pos.partition, pos.offset)] == value
