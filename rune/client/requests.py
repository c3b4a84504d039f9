"""``Requests``: authorization requests through the request topic, answered on the decision
topic.

::

    from rune.client import Requests

    with Requests("localhost:9092") as requests:
        decision = requests.check('User::"alice"', 'Action::"read"', 'Doc::"design"',
                                  token=token)        # a FactProducer's token
        decision.allowed, decision.reasons, decision.watermark

The decision topic is read from its end as of the object's creation (and filtered by the ids
this object sent), so create it before sending. A request carrying a token is decided once
the service applied the records it names, or denied with an ``error`` (``stale view``) after
``stream.token_wait_s``. Not thread-safe.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Final

import orjson
from confluent_kafka import KafkaException, Producer

from rune.client._kafka import Connection, TopicReader, options_for, topics_or_default
from rune.client.errors import ClientError, ClientTimeout, DeliveryFailed
from rune.client.producer import entity_json
from rune.client.readers import decision_from_json
from rune.client.tokens import Token
from rune.config import Topics
from rune.policies.decision import Decision

__all__ = ["Requests", "new_request_id"]

DEFAULT_TIMEOUT_S: Final = 30.0


def new_request_id() -> str:
    """A fresh request id (``req-`` + 16 hex digits)."""
    return f"req-{uuid.uuid4().hex[:16]}"


class Requests:
    """Sends requests (key = request id) and waits for their decisions by id."""

    def __init__(
        self,
        kafka: Connection,
        topics: Topics | None = None,
        *,
        committed_only: bool = False,
        client_id: str = "rune-requests",
    ) -> None:
        self.options = options_for(kafka, client_id)
        self.topics = topics_or_default(topics)
        config = self.options.producer()
        config.pop("statistics.interval.ms", None)
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise ClientError(f"Kafka producer: {exc.args[0].str()}") from None
        self._reader = TopicReader(
            self.options, self.topics.decisions, "end", committed_only=committed_only
        )
        self._pending: set[str] = set()
        self._decided: dict[str, Decision] = {}
        self._failed: dict[str, str] = {}

    def request(
        self,
        principal: object,
        action: object,
        resource: object,
        context: Mapping[str, Any] | None = None,
        *,
        token: Token | None = None,
        explain: bool = False,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """A request of contract v1 (entities as EntityRef, ``{"type","id"}`` or
        ``Type::"id"``)."""
        out: dict[str, Any] = {
            "id": request_id or new_request_id(),
            "principal": entity_json(principal, "principal"),
            "action": entity_json(action, "action"),
            "resource": entity_json(resource, "resource"),
            "context": dict(context or {}),
        }
        if token:
            out["consistency"] = token.consistency()
        if explain:
            out["explain"] = True
        return out

    def send(self, request: Mapping[str, Any]) -> str:
        """Produce one request (an ``id`` is added when missing); its id. Does not wait."""
        body = dict(request)
        rid = body.setdefault("id", new_request_id())
        if not isinstance(rid, str):
            raise ClientError(f"a request id is a string, got {type(rid).__name__}")
        self._pending.add(rid)

        def done(err: Any, msg: Any) -> None:
            if err is not None:
                self._failed[rid] = err.str()

        while True:
            try:
                self._producer.produce(
                    self.topics.requests, orjson.dumps(body), rid.encode(), on_delivery=done
                )
                break
            except BufferError:
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise ClientError(f"producing a request: {exc.args[0].str()}") from None
        self._producer.poll(0)
        return rid

    def wait(self, request_id: str, timeout: float = DEFAULT_TIMEOUT_S) -> Decision:
        """The decision of a request sent by this object (the first one read, if the topic
        holds several). Raises :class:`ClientTimeout` or :class:`DeliveryFailed`."""
        return self.wait_all([request_id], timeout)[request_id]

    def wait_all(
        self, request_ids: list[str], timeout: float = DEFAULT_TIMEOUT_S
    ) -> dict[str, Decision]:
        """The decisions of several requests sent by this object, by id."""
        deadline = time.monotonic() + timeout
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        for rid in request_ids:
            if rid in self._failed:
                raise DeliveryFailed(f"request {rid}: {self._failed.pop(rid)}")
        while not all(rid in self._decided for rid in request_ids):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [r for r in request_ids if r not in self._decided]
                raise ClientTimeout(
                    f"no decision within {timeout} s for {len(missing)} request(s), e.g. "
                    f"{missing[0]} (is `rune run --kafka` running on these topics?)"
                )
            for record in self._reader.poll(min(left, 0.2)):
                try:
                    decision = decision_from_json(orjson.loads(record.value or b"null"))
                except (ValueError, orjson.JSONDecodeError):
                    continue
                if decision.id in self._pending and decision.id not in self._decided:
                    self._decided[decision.id] = decision
        out = {rid: self._decided.pop(rid) for rid in request_ids}
        self._pending.difference_update(request_ids)
        return out

    def check(
        self,
        principal: object,
        action: object,
        resource: object,
        context: Mapping[str, Any] | None = None,
        *,
        token: Token | None = None,
        explain: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> Decision:
        """Send one request and wait for its decision."""
        request = self.request(principal, action, resource, context, token=token, explain=explain)
        return self.wait(self.send(request), timeout)

    def close(self) -> None:
        self._producer.flush(10)
        self._reader.close()

    def __enter__(self) -> Requests:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
