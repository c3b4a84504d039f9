"""``FactProducer``: fact and entity events, and policy bundles, produced the way ingest
requires.

Every record gets the canonical key of its event (``f:`` + canonical JSON of the fact, ``e:``
+ canonical JSON of the entity uid: :func:`rune.streams.event_key`) and goes to the partition
Kafka's default partitioner gives that key (murmur2, computed here: ingest dead-letters a
record found elsewhere). Records are batched by librdkafka; each call returns a
:class:`Receipt` whose :meth:`Receipt.token` waits for the acknowledgement, and
:meth:`FactProducer.flush` waits for all of them and returns the :class:`Token` covering
everything acknowledged so far, to pass in requests (``consistency``)::

    from rune.client import EntityRef, FactProducer

    with FactProducer("localhost:9092") as facts:
        facts.assert_fact("member", EntityRef("User", "alice"), EntityRef("Group", "eng"))
        facts.upsert_entity(EntityRef("Doc", "design"), attrs={"draft": True})
        token = facts.flush()

Guarantees: an idempotent producer (``acks=all``), so records of one key keep their order
and are not duplicated by retries. Events are checked locally before they are produced
(shape, relation names, value types, Cedar entity syntax; not the bundle's schema, which only
the service knows): a bad event raises :class:`ClientError` and nothing is produced for it.
Retractions and deletions are produced as tombstones (null values), so compaction can drop
the key. Pitfalls: not thread-safe (use one producer per thread); a record's partition is
computed from the partition count of the topic, re-read every 30 s — adding partitions to
the fact topic moves keys (do not).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from rune.authorizer import Authorizer
from rune.client._kafka import (
    PARTITIONS_TTL_S,
    Connection,
    options_for,
    partition_ids,
    topics_or_default,
)
from rune.client.errors import ClientError, ClientTimeout, DeliveryFailed
from rune.client.tokens import Token
from rune.config import Topics
from rune.connectors.partitioner import default_partition
from rune.errors import RuneError
from rune.ivm.values import EntityRef
from rune.policies.errors import PolicyError
from rune.policies.refs import parse_ref
from rune.policies.sources import BundleSource, read_bundle
from rune.streams.keys import event_key

__all__ = ["FactProducer", "Receipt", "entity_json"]

DEFAULT_TIMEOUT_S: Final = 30.0


def entity_json(value: object, where: str = "entity") -> dict[str, str]:
    """An entity reference as ``{"type", "id"}``: from an :class:`EntityRef`, a mapping, or a
    Cedar-style string ``Type::"id"``."""
    if isinstance(value, EntityRef):
        return {"type": value.type, "id": value.id}
    if isinstance(value, str):
        ref = parse_ref(value)
        if ref is None:
            raise ClientError(f'{where}: expected Type::"id", got {value!r}')
        return {"type": ref.type, "id": ref.id}
    if isinstance(value, Mapping):
        return dict(value)
    raise ClientError(f"{where}: expected an entity reference, got {type(value).__name__}")


def _arg(value: object) -> object:
    if isinstance(value, EntityRef):
        return {"type": value.type, "id": value.id}
    return value


class Receipt:
    """The acknowledgement of one produced record, filled in by the producer."""

    __slots__ = ("_error", "_producer", "_token")

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._token: Token | None = None
        self._error: str | None = None

    def acknowledged(self, err: KafkaError | None, msg: Message) -> None:
        """The delivery report (librdkafka calls it; not for users)."""
        if err is not None:
            self._error = err.str()
        else:
            self._token = Token.at(msg.topic() or "", msg.partition() or 0, msg.offset() or 0)

    @property
    def done(self) -> bool:
        return self._token is not None or self._error is not None

    @property
    def outcome(self) -> Token | str | None:
        """The position (a token) once acknowledged, the error text once failed, else None."""
        return self._token if self._token is not None else self._error

    def token(self, timeout: float = DEFAULT_TIMEOUT_S) -> Token:
        """Wait for the acknowledgement; the record's position as a token. Raises
        :class:`DeliveryFailed` or :class:`ClientTimeout`."""
        deadline = time.monotonic() + timeout
        while not self.done:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientTimeout(f"no acknowledgement within {timeout} s")
            self._producer.poll(min(left, 0.1))
        if self._error is not None:
            raise DeliveryFailed(self._error)
        assert self._token is not None
        return self._token


class FactProducer:
    """Produces fact and entity events to the fact topic and bundles to the policy topic.

    ``kafka``: a bootstrap address or :class:`~rune.connectors.kafka.KafkaOptions`;
    ``topics``: RUNE's topic names (default ``rune.*``, as ``[topics]`` in the settings).
    """

    def __init__(
        self,
        kafka: Connection,
        topics: Topics | None = None,
        *,
        validate: bool = True,
        client_id: str = "rune-producer",
    ) -> None:
        self.options = options_for(kafka, client_id)
        self.topics = topics_or_default(topics)
        self.validate = validate
        config = self.options.producer()
        config.pop("statistics.interval.ms", None)
        config.pop("partitioner", None)  # partitions are computed here
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise ClientError(f"Kafka producer: {exc.args[0].str()}") from None
        self._partitions: dict[str, tuple[float, int]] = {}
        self._receipts: list[Receipt] = []
        self._token = Token()
        self._checker = Authorizer(cache_entries=0) if validate else None
        self.produced = 0

    # -- events -------------------------------------------------------------------------

    def assert_fact(self, relation: str, *args: object) -> Receipt:
        """Assert ``relation(args...)``; entity arguments as :class:`EntityRef` or
        ``{"type", "id"}`` (a plain string is a string value)."""
        return self.send_event({"op": "assert", "fact": [relation, *map(_arg, args)]})

    def retract_fact(self, relation: str, *args: object) -> Receipt:
        """Retract ``relation(args...)`` (a tombstone under the fact's key)."""
        return self.send_event({"op": "retract", "fact": [relation, *map(_arg, args)]})

    def upsert_entity(
        self,
        uid: object,
        attrs: Mapping[str, Any] | None = None,
        parents: Iterable[object] = (),
        tags: Mapping[str, Any] | None = None,
    ) -> Receipt:
        """Create or replace a Cedar entity (attributes in Cedar's JSON: an entity-valued
        attribute is ``{"__entity": {"type", "id"}}``)."""
        entity: dict[str, Any] = {
            "uid": entity_json(uid, "uid"),
            "attrs": dict(attrs or {}),
            "parents": [entity_json(p, "parents") for p in parents],
        }
        if tags is not None:
            entity["tags"] = dict(tags)
        return self.send_event({"op": "upsert", "entity": entity})

    def delete_entity(self, uid: object) -> Receipt:
        """Delete a Cedar entity (a tombstone under the entity's key)."""
        return self.send_event({"op": "delete", "entity": {"uid": entity_json(uid, "uid")}})

    def send_event(self, event: Mapping[str, Any], *, tombstone: bool | None = None) -> Receipt:
        """Produce one event of contract v1 under its canonical key. ``tombstone``: produce
        a retract/delete as a null value (default) or as the event itself (``False``)."""
        if self._checker is not None:
            try:
                self._checker.validate_events([event], prefix="")
            except PolicyError as exc:
                raise ClientError(f"invalid event: {exc}") from None
        try:
            key = event_key(event)
        except RuneError as exc:
            raise ClientError(f"invalid event: {exc}") from None
        removal = event.get("op") in ("retract", "delete")
        value = None if removal and tombstone is not False else orjson.dumps(event)
        return self._produce(self.topics.facts, key, value)

    def send_events(
        self, events: Iterable[Mapping[str, Any]], timeout: float = DEFAULT_TIMEOUT_S
    ) -> Token:
        """Produce ``events`` in order and wait for all; the token covering them."""
        for event in events:
            self.send_event(event)
        return self.flush(timeout)

    # -- bundles --------------------------------------------------------------------------

    def publish_bundle(
        self,
        bundle: Mapping[str, Any] | BundleSource | Path,
        name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Token:
        """Publish a bundle (a JSON-ready mapping, a :class:`BundleSource`, or the path of a
        bundle JSON file or source directory) under ``name`` (default: the bundle's name, else
        ``default``); wait for the acknowledgement. With ``validate`` (the default) the
        bundle is compiled first, and an invalid one raises :class:`ClientError` (located at
        FILE:LINE for source directories) without being produced: a rejected bundle on the
        compacted policy topic would otherwise replace the active one's record. Pitfall: the
        service activates only a *higher* version than the active one."""
        source = bundle if isinstance(bundle, BundleSource) else None
        if isinstance(bundle, Path):
            try:
                source = read_bundle(bundle)
            except PolicyError as exc:
                raise ClientError(str(exc)) from None
        raw = source.bundle if source is not None else dict(bundle)  # type: ignore[arg-type]
        if self.validate:
            try:
                Authorizer(cache_entries=0).validate_bundle(raw)
            except PolicyError as exc:
                where = source.locate(exc) if source is not None else str(exc)
                raise ClientError(f"bundle rejected: {where}") from None
        if name is None:
            named = raw.get("name")
            name = source.name if source is not None else named if isinstance(named, str) else None
        receipt = self._produce(
            self.topics.policies, (name or "default").encode(), orjson.dumps(raw)
        )
        token = receipt.token(timeout)
        self._token = self._token.merge(token)
        return token

    # -- plumbing -------------------------------------------------------------------------

    def partition_count(self, topic: str) -> int:
        cached = self._partitions.get(topic)
        if cached is not None and time.monotonic() < cached[0]:
            return cached[1]
        count = len(partition_ids(self._producer, topic))
        self._partitions[topic] = (time.monotonic() + PARTITIONS_TTL_S, count)
        return count

    def _produce(self, topic: str, key: bytes, value: bytes | None) -> Receipt:
        partition = default_partition(key, self.partition_count(topic))
        receipt = Receipt(self._producer)
        while True:
            try:
                self._producer.produce(
                    topic, value, key, partition=partition, on_delivery=receipt.acknowledged
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise ClientError(f"producing to {topic!r}: {exc.args[0].str()}") from None
        self._receipts.append(receipt)
        self.produced += 1
        if len(self._receipts) >= 10_000:
            self._collect()
        self._producer.poll(0)
        return receipt

    def _collect(self) -> None:
        """Fold finished receipts into the token (raise on the first failed one)."""
        pending: list[Receipt] = []
        failed: str | None = None
        for r in self._receipts:
            outcome = r.outcome
            if isinstance(outcome, Token):
                self._token = self._token.merge(outcome)
            elif outcome is not None:
                failed = failed or outcome
            else:
                pending.append(r)
        self._receipts = pending
        if failed is not None:
            raise DeliveryFailed(failed)

    def flush(self, timeout: float = DEFAULT_TIMEOUT_S) -> Token:
        """Wait until every record produced so far is acknowledged; the token covering
        everything this producer had acknowledged. Raises :class:`DeliveryFailed` (a record
        was refused) or :class:`ClientTimeout`."""
        left = self._producer.flush(timeout)
        self._collect()
        if left:
            raise ClientTimeout(f"{left} record(s) not acknowledged within {timeout} s")
        return self._token

    @property
    def token(self) -> Token:
        """The token of what was acknowledged so far (without waiting)."""
        self._producer.poll(0)
        self._collect()
        return self._token

    def close(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Flush what is pending (errors are raised) and release the producer."""
        self.flush(timeout)

    def __enter__(self) -> FactProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
