"""The one log interface every connector implements (Kafka, embedded in-process log, files).

A *log* is a set of topics of numbered partitions of records, as in Kafka. The service needs
from it: create topics, read end offsets, read all partitions of some topics (manual
assignment, from the beginning), read a topic through a consumer group (with commits),
produce records acknowledged by the log, and optionally produce records together with the
group's offsets in one transaction (exactly-once serving).

Errors: every failure is a :class:`ConnectorError`. :class:`DeliveryError` says which records
were not acknowledged and whether trying again can help; :class:`FatalLogError` means the
client cannot go on (authorization failure, a topic deleted, a fenced producer) and the
service must stop. Anything else (a broker restarting, a leader election, a broker away for
minutes) is the connector's to ride out: it retries and reports ``available() == False``
meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from rune.errors import RuneError

__all__ = [
    "TP",
    "ConnectorError",
    "DeliveryError",
    "FatalLogError",
    "Log",
    "Outgoing",
    "Position",
    "Reader",
    "Record",
    "TopicSpec",
]

TP = tuple[str, int]
"""A ``(topic, partition)`` pair."""


class ConnectorError(RuneError):
    """A log operation failed (broker unreachable, topic missing, produce not acknowledged)."""


class FatalLogError(ConnectorError):
    """The log client cannot continue: the service stops and names the cause."""


class DeliveryError(ConnectorError):
    """Some records were not acknowledged. ``failed`` are those records (in produce order);
    ``retriable``: producing them again may succeed (a timeout, a broker away), else it
    cannot (a record too large for the topic, a topic that does not exist)."""

    def __init__(self, message: str, failed: Sequence[Outgoing], *, retriable: bool) -> None:
        super().__init__(message)
        self.failed = list(failed)
        self.retriable = retriable


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
    """A record to produce; ``partition=None`` lets the log choose by key (Kafka's default
    partitioner: murmur2 of the key, as Java clients do)."""

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
        partition. Raises :class:`FatalLogError` when the reader cannot go on."""
        ...

    async def positions(self) -> dict[TP, int]:
        """Next offset to fetch per assigned ``(topic, partition)`` (as far as known: a
        partition not fetched from yet may be missing)."""
        ...

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        """Commit ``next offset to read`` per partition for the consumer group (if any);
        partitions no longer assigned are left out."""
        ...

    async def close(self) -> None: ...


class Log(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def available(self) -> bool:
        """Whether the log is reachable now (readiness and metrics report it)."""
        ...

    async def failed(self) -> FatalLogError:
        """Completes (returns the error) once the log cannot continue; never otherwise."""
        ...

    async def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        """Create the topics that do not exist yet (existing ones are left as they are)."""
        ...

    async def end_offsets(self, topics: Sequence[str]) -> dict[TP, int]:
        """Offset after the last record of every partition of ``topics``."""
        ...

    async def partitions(self, topic: str) -> list[int]:
        """Partition ids of ``topic``."""
        ...

    async def assign(self, topics: Sequence[str], *, batch: int = ...) -> Reader:
        """A reader of all partitions of ``topics`` from the beginning (no group);
        ``batch``: records fetched ahead at a time."""
        ...

    async def subscribe(
        self,
        topic: str,
        group: str,
        *,
        batch: int = ...,
        on_revoke: Callable[[list[TP]], None] | None = ...,
    ) -> Reader:
        """A reader of ``topic`` through consumer group ``group`` (committed offsets);
        ``on_revoke`` is called with the partitions a rebalance takes away."""
        ...

    async def produce(self, records: Sequence[Outgoing]) -> list[Position]:
        """Produce ``records`` and return once the log acknowledged all of them (raise
        :class:`DeliveryError` naming those it did not)."""
        ...

    async def send(self, records: Sequence[Outgoing]) -> None:
        """:meth:`produce` without the positions (cheaper per record)."""
        ...

    @property
    def transactional(self) -> bool:
        """Whether :meth:`produce_committing` is atomic (exactly-once serving)."""
        ...

    async def produce_committing(
        self, records: Sequence[Outgoing], reader: Reader, offsets: Mapping[TP, int]
    ) -> None:
        """Produce ``records`` and commit ``offsets`` of ``reader``'s group, atomically when
        :attr:`transactional` (a ``read_committed`` consumer then sees the records exactly
        once), else produce then commit."""
        ...


class NeverFails:
    """``Log.failed`` for logs that cannot fail fatally (in-process ones)."""

    async def failed(self) -> FatalLogError:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")
