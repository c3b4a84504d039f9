"""The one log interface every connector implements (Kafka, embedded in-process log, files).

A *log* is a set of topics of numbered partitions of records, as in Kafka. The service needs
five things from it: create topics, read end offsets, read all partitions of some topics
(manual assignment, from the beginning), read a topic through a consumer group (with commits),
and produce records acknowledged by the log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from rune.errors import RuneError

__all__ = [
    "ConnectorError",
    "Log",
    "Outgoing",
    "Position",
    "Reader",
    "Record",
    "TopicSpec",
]


class ConnectorError(RuneError):
    """A log operation failed (broker unreachable, topic missing, produce not acknowledged)."""


class Record(NamedTuple):
    """One fetched record. ``origin`` optionally names where it came from (``file:line``).

    The three per-record types are named tuples: immutable like frozen dataclasses, and
    built in a third of the time (a frozen dataclass sets each field through
    ``object.__setattr__``), which matters at tens of thousands of records per second.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    origin: str | None = None

    @property
    def where(self) -> str:
        return self.origin or f"{self.topic}[{self.partition}]@{self.offset}"


class Outgoing(NamedTuple):
    """A record to produce; ``partition=None`` lets the log choose by key."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


class Position(NamedTuple):
    """Where an acknowledged record was written."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int = 1
    configs: Mapping[str, str] = field(default_factory=dict)
    replication: int = 1


class Reader(Protocol):
    """Fetches batches of records from the partitions it was given."""

    async def fetch(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records (maybe none after ``timeout_s``), in offset order per
        partition."""
        ...

    async def positions(self) -> dict[tuple[str, int], int]:
        """Next offset to fetch per assigned ``(topic, partition)``."""
        ...

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """Commit ``next offset to read`` per partition for the consumer group (if any)."""
        ...

    async def close(self) -> None: ...


class Log(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet (existing ones are left as they are)."""
        ...

    async def end_offsets(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        """Offset after the last record of every partition of ``topics``."""
        ...

    async def assign(self, topics: Sequence[str]) -> Reader:
        """A reader of all partitions of ``topics`` from the beginning (no group)."""
        ...

    async def subscribe(self, topic: str, group: str) -> Reader:
        """A reader of ``topic`` through consumer group ``group`` (committed offsets)."""
        ...

    async def produce(self, records: Sequence[Outgoing]) -> list[Position]:
        """Produce ``records`` and return once the log acknowledged all of them."""
        ...
