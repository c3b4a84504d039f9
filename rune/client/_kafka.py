"""What the client's producer and readers share: options, partition counts, a topic reader."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final, Literal

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from rune.client.errors import ClientError
from rune.config import Topics
from rune.connectors.kafka import codes
from rune.connectors.kafka.options import KafkaOptions

__all__ = [
    "Connection",
    "Record",
    "TopicReader",
    "options_for",
    "partition_ids",
    "topics_or_default",
]

METADATA_TIMEOUT_S: Final = 15.0
PARTITIONS_TTL_S: Final = 30.0
CLIENT_DELIVERY_TIMEOUT_MS: Final = 120_000
"""The client gives up on a record after 2 minutes (the service itself never does)."""

Connection = str | KafkaOptions
"""A bootstrap address (``HOST:PORT[,HOST:PORT]``) or full :class:`KafkaOptions` (TLS, SASL
and other librdkafka properties go in ``KafkaOptions.librdkafka``)."""


def options_for(kafka: Connection, client_id: str) -> KafkaOptions:
    if isinstance(kafka, KafkaOptions):
        return kafka
    return KafkaOptions(
        bootstrap=kafka, client_id=client_id, delivery_timeout_ms=CLIENT_DELIVERY_TIMEOUT_MS
    )


def topics_or_default(topics: Topics | None) -> Topics:
    return topics if topics is not None else Topics()


def partition_ids(client: Any, topic: str) -> list[int]:
    """Partition ids of ``topic`` from the metadata of a producer or consumer."""
    try:
        meta = client.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise ClientError(f"metadata of topic {topic!r}: {exc.args[0].str()}") from None
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        why = info.error.str() if info is not None and info.error is not None else "no partitions"
        raise ClientError(
            f"topic {topic!r} is not available ({why}); create RUNE's topics with "
            "`rune topics create` or by starting `rune run --kafka`"
        )
    return sorted(info.partitions)


class Record:
    """One record read (the topic, its position, key and value)."""

    __slots__ = ("key", "offset", "partition", "timestamp_ms", "topic", "value")

    def __init__(self, msg: Message) -> None:
        self.topic: str = msg.topic() or ""
        self.partition: int = msg.partition() or 0
        self.offset: int = msg.offset() or 0
        self.key: bytes | None = msg.key()
        self.value: bytes | None = msg.value()
        self.timestamp_ms: int = msg.timestamp()[1]


class TopicReader:
    """Every partition of one topic, assigned (no consumer group, nothing committed), from the
    beginning or from the end as of construction.

    :meth:`poll` returns what is there (waiting up to ``timeout`` for the first record);
    :attr:`caught_up` says whether every partition was read up to the end it had when the
    reader was made. Not thread-safe."""

    def __init__(
        self,
        options: KafkaOptions,
        topic: str,
        start: Literal["beginning", "end"] = "beginning",
        *,
        committed_only: bool = False,
    ) -> None:
        isolation = "read_committed" if committed_only else "read_uncommitted"
        config = replace(options, isolation_level=isolation).consumer(None)
        config["group.id"] = f"{options.client_id}-reader"
        self.topic = topic
        self._consumer = Consumer(config)
        try:
            self.partitions = partition_ids(self._consumer, topic)
            self.ends: dict[int, int] = {}
            for p in self.partitions:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=METADATA_TIMEOUT_S
                )
                self.ends[p] = high
        except KafkaException as exc:
            self._consumer.close()
            raise ClientError(f"offsets of topic {topic!r}: {exc.args[0].str()}") from None
        except ClientError:
            self._consumer.close()
            raise
        self._reached: dict[int, int] = {}
        if start == "beginning":
            self._consumer.assign(
                [TopicPartition(topic, p, OFFSET_BEGINNING) for p in self.partitions]
            )
        else:
            self._consumer.assign([TopicPartition(topic, p, self.ends[p]) for p in self.partitions])
            self._reached = dict(self.ends)
        self._closed = False

    @property
    def caught_up(self) -> bool:
        return all(self._reached.get(p, 0) >= end for p, end in self.ends.items())

    def poll(self, timeout: float = 1.0, max_records: int = 10_000) -> list[Record]:
        """Records available now, after waiting up to ``timeout`` seconds for the first."""
        out: list[Record] = []
        first = self._consumer.poll(timeout)
        if first is None:
            return out
        msgs = [first, *self._consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
        for msg in msgs:
            err = msg.error()
            if err is None:
                record = Record(msg)
                self._reached[record.partition] = record.offset + 1
                out.append(record)
            elif err.code() == codes.PARTITION_EOF:
                p = msg.partition() or 0
                self._reached[p] = max(self._reached.get(p, 0), msg.offset() or 0)
            elif err.fatal() or err.code() in (
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                codes.UNKNOWN_TOPIC,
                KafkaError.TOPIC_AUTHORIZATION_FAILED,
            ):
                raise ClientError(f"reading {self.topic!r}: {err.str()}")
        return out

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()
