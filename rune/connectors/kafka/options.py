"""Client settings of the Kafka connector, turned into librdkafka configuration dicts.

One frozen object; the CLI builds it from the ``[kafka]`` settings section. Every client
(producer, readers, admin) gets the common part (bootstrap, client id, the ``librdkafka``
pass-through for TLS/SASL and other properties RUNE does not name).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["KafkaOptions"]

STATS_INTERVAL_MS: Final = 1000
"""How often librdkafka reports broker states (``available()`` follows them)."""


@dataclass(frozen=True, slots=True)
class KafkaOptions:
    """What the Kafka connector needs to know; defaults suit a local broker."""

    bootstrap: str
    client_id: str = "rune"
    isolation_level: str = "read_uncommitted"
    linger_ms: float = 1.0
    """How long the producer waits to fill a batch (librdkafka ``linger.ms``)."""
    batch_bytes: int = 1_000_000
    """Largest produce batch (``batch.size``)."""
    compression: str = "none"
    """``none``, ``gzip``, ``snappy``, ``lz4`` or ``zstd`` (``compression.type``)."""
    delivery_timeout_ms: int = 0
    """Give up on a record after this long (``message.timeout.ms``); 0: never, records wait
    for the broker to come back however long it is away."""
    request_timeout_ms: int = 15_000
    fetch_queue_kbytes: int = 16_384
    """Bound on records prefetched per reader (``queued.max.messages.kbytes``)."""
    exactly_once: bool = False
    """Serve decisions through a transactional producer (``produce_committing``)."""
    transactional_id: str = ""
    """Stable id of this instance's transactional producer; empty: derived from the client
    id, the host name and ``instance``."""
    instance: str = ""
    """Tells instances on one host apart in the derived transactional id (a worker index)."""
    transaction_timeout_ms: int = 30_000
    librdkafka: Mapping[str, str] = field(default_factory=dict)
    """Further librdkafka properties for every client (``security.protocol``, ``sasl.*``,
    ``ssl.*``...); they override RUNE's own."""

    def common(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": self.client_id,
            "socket.timeout.ms": self.request_timeout_ms,
            # librdkafka's own log: only its fatal lines, through Python logging (structlog);
            # errors reach error_cb and become rate-limited notices
            "log_level": 0,
            "logger": logging.getLogger("rune.kafka"),
        }

    def producer(self) -> dict[str, Any]:
        return {
            **self.common(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_bytes,
            "compression.type": self.compression,
            "message.timeout.ms": self.delivery_timeout_ms,
            "request.timeout.ms": self.request_timeout_ms,
            "partitioner": "murmur2_random",  # keyed records where Java clients put them
            "queue.buffering.max.messages": 500_000,
            "message.max.bytes": 16 * 1024 * 1024,  # topics bound what they accept
            "queue.buffering.max.kbytes": 512 * 1024,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            **self.librdkafka,
        }

    def transactional_producer(self) -> dict[str, Any]:
        config = self.producer()
        config.pop("statistics.interval.ms")
        config["transactional.id"] = self.transactional_id or _derived_id(
            self.client_id, self.instance
        )
        config["transaction.timeout.ms"] = self.transaction_timeout_ms
        return config

    def consumer(self, group: str | None) -> dict[str, Any]:
        config: dict[str, Any] = {
            **self.common(),
            # librdkafka wants a group id even for manual assignment; it only joins a group
            # (and commits) for subscriptions
            "group.id": group or f"{self.client_id}-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": self.isolation_level,
            "queued.max.messages.kbytes": self.fetch_queue_kbytes,
            "enable.partition.eof": group is None,
        }
        if group is not None:
            config["partition.assignment.strategy"] = "cooperative-sticky"
        config.update(self.librdkafka)
        return config

    def admin(self) -> dict[str, Any]:
        return {**self.common(), **self.librdkafka}


def _derived_id(client_id: str, instance: str) -> str:
    suffix = f"-{instance}" if instance else ""
    return f"{client_id}-{socket.gethostname()}{suffix}"
