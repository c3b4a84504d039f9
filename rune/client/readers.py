"""Readers of the service's output topics: decisions (typed, deduplicated) and the changefeed
(materialized, with completeness from checkpoints).

Both read every partition by assignment (no consumer group, nothing committed): a reader
always starts from the beginning or from the end, never from where a previous run stopped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, Final, NamedTuple

import orjson

from rune.client._kafka import Connection, Record, TopicReader, options_for, topics_or_default
from rune.client.errors import ClientTimeout
from rune.client.tokens import Token
from rune.config import Topics
from rune.ivm.values import EntityRef, Value
from rune.policies.decision import Decision
from rune.streams.changefeed import CHECKPOINT_KEY, tuple_key

__all__ = ["Change", "ChangefeedReader", "DecisionReader", "decision_from_json"]

DEFAULT_DEDUPE: Final = 100_000


def decision_from_json(value: Mapping[str, Any]) -> Decision:
    """A decision record of contract v1 as the service's typed :class:`Decision` (raise
    ``ValueError`` when it is not one)."""
    try:
        verdict = value["decision"]
        if verdict not in ("allow", "deny"):
            raise ValueError(f"decision must be allow or deny, got {verdict!r}")
        rid = value.get("id")
        return Decision(
            id=rid if isinstance(rid, str) else None,
            allowed=verdict == "allow",
            reasons=tuple(value.get("reasons") or ()),
            errors=tuple(value.get("errors") or ()),
            policy_version=value.get("policy_version"),
            watermark=value.get("watermark") or {},
            latency_us=int(value.get("latency_us") or 0),
            error=value.get("error"),
            explanation=value.get("explanation"),
            request=value.get("request"),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a decision record: {exc}") from None


class DecisionReader:
    """Decisions of the decision topic, typed and deduplicated by request id.

    The decision topic is at-least-once by default: after a restart or rebalance a request
    may be decided again (same id). The reader remembers the last ``dedupe`` ids and yields
    each id once (0: no deduplication). Pitfall: this relies on unique request ids. With
    exactly-once services pass ``committed_only=True`` (``read_committed``).
    Records that are not decisions are skipped and counted in :attr:`malformed`."""

    def __init__(
        self,
        kafka: Connection,
        topics: Topics | None = None,
        *,
        from_beginning: bool = False,
        committed_only: bool = False,
        dedupe: int = DEFAULT_DEDUPE,
        client_id: str = "rune-decisions",
    ) -> None:
        self.topics = topics_or_default(topics)
        self._reader = TopicReader(
            options_for(kafka, client_id),
            self.topics.decisions,
            "beginning" if from_beginning else "end",
            committed_only=committed_only,
        )
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe = dedupe
        self.malformed = 0
        self.duplicates = 0

    @property
    def caught_up(self) -> bool:
        """Every partition was read up to where it ended when the reader was made."""
        return self._reader.caught_up

    def poll(self, timeout: float = 1.0) -> list[Decision]:
        """New decisions (waiting up to ``timeout`` s for the first record)."""
        out = []
        for record in self._reader.poll(timeout):
            decision = self._decode(record)
            if decision is not None:
                out.append(decision)
        return out

    def _decode(self, record: Record) -> Decision | None:
        try:
            decision = decision_from_json(orjson.loads(record.value or b"null"))
        except (ValueError, orjson.JSONDecodeError):
            self.malformed += 1
            return None
        rid = decision.id
        if self._dedupe and rid is not None:
            if rid in self._seen:
                self.duplicates += 1
                self._seen.move_to_end(rid)
                return None
            self._seen[rid] = None
            if len(self._seen) > self._dedupe:
                self._seen.popitem(last=False)
        return decision

    def __iter__(self) -> Iterator[Decision]:
        """Decisions forever (until the reader is closed or the loop is left)."""
        while True:
            yield from self.poll(1.0)

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> DecisionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Change(NamedTuple):
    """One changefeed record: ``relation(tuple)`` became present or absent."""

    relation: str
    tuple: tuple[Value, ...]
    present: bool


def _value(v: object) -> Value:
    if isinstance(v, dict):
        return EntityRef(str(v.get("type")), str(v.get("id")))
    return v  # type: ignore[return-value]


class ChangefeedReader:
    """The changes topic, materialized: the current set of tuples of the service's changefeed
    relations (``--changefeed REL``), read from the beginning.

    Completeness: the service writes a checkpoint to every partition; a checkpoint with
    watermark W follows every change up to W in its partition. :attr:`watermark` is what the
    copy is complete for (the lowest checkpoint over the partitions, None until every
    partition had one); :meth:`complete` checks it against a :class:`Token`, and
    :meth:`wait_complete` reads until it holds. Pitfall: checkpoints come every
    ``stream.checkpoint_interval_s``, so completeness for a fresh token takes up to that
    long after the service applied it."""

    def __init__(
        self,
        kafka: Connection,
        topics: Topics | None = None,
        *,
        client_id: str = "rune-changes",
    ) -> None:
        self.topics = topics_or_default(topics)
        self._reader = TopicReader(options_for(kafka, client_id), self.topics.changes)
        self._tuples: dict[bytes, tuple[str, tuple[Value, ...]]] = {}
        self._checkpoints: dict[int, Mapping[str, Any]] = {}
        self.malformed = 0

    def poll(self, timeout: float = 1.0) -> list[Change]:
        """Apply what arrived (waiting up to ``timeout`` s); the changes it made."""
        out: list[Change] = []
        for r in self._reader.poll(timeout):
            if r.key == CHECKPOINT_KEY:
                try:
                    value = orjson.loads(r.value or b"null")
                    self._checkpoints[r.partition] = value
                except orjson.JSONDecodeError:
                    self.malformed += 1
                continue
            if r.key is None:
                self.malformed += 1
                continue
            if r.value is None:
                gone = self._tuples.pop(r.key, None)
                if gone is not None:
                    out.append(Change(gone[0], gone[1], False))
                continue
            try:
                value = orjson.loads(r.value)
                row = (str(value["relation"]), tuple(_value(v) for v in value["tuple"]))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.malformed += 1
                continue
            if self._tuples.get(r.key) != row:
                self._tuples[r.key] = row
                out.append(Change(row[0], row[1], True))
        return out

    @property
    def checkpoints(self) -> dict[int, Mapping[str, Any]]:
        """The last checkpoint read per partition."""
        return dict(self._checkpoints)

    @property
    def watermark(self) -> dict[str, dict[str, int]] | None:
        """The watermark the copy is complete for: per fact/policy partition the lowest
        offset over the checkpoints of every changes partition (None: some partition has
        had no checkpoint yet)."""
        if len(self._checkpoints) < len(self._reader.partitions):
            return None
        out: dict[str, dict[str, int]] = {}
        marks = [c.get("watermark") or {} for c in self._checkpoints.values()]
        topics = set().union(*(m.keys() for m in marks))
        for topic in topics:
            parts = set().union(*((m.get(topic) or {}).keys() for m in marks))
            out[topic] = {p: min((m.get(topic) or {}).get(p, -1) for m in marks) for p in parts}
        return out

    @property
    def policy_version(self) -> int | None:
        versions = [c.get("policy_version") for c in self._checkpoints.values()]
        return min((v for v in versions if isinstance(v, int)), default=None)

    def complete(self, token: Token | None = None) -> bool:
        """Whether the copy is complete: every partition read up to its end as of the
        reader's creation and a checkpoint in each, covering ``token`` when given."""
        mark = self.watermark
        if mark is None or not self._reader.caught_up:
            return False
        return token is None or token.satisfied_by(mark)

    def wait_complete(self, token: Token | None = None, timeout: float = 30.0) -> None:
        """Read until :meth:`complete` holds; raise :class:`ClientTimeout` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.complete(token):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientTimeout(
                    f"{self.topics.changes}: not complete for {token} within {timeout} s "
                    f"(watermark {self.watermark})"
                )
            self.poll(min(left, 0.2))

    def tuples(self, relation: str) -> set[tuple[Value, ...]]:
        """The current tuples of ``relation`` (entities as :class:`EntityRef`)."""
        return {row for rel, row in self._tuples.values() if rel == relation}

    def state(self) -> dict[str, set[tuple[Value, ...]]]:
        """The current tuples of every relation."""
        out: dict[str, set[tuple[Value, ...]]] = {}
        for rel, row in self._tuples.values():
            out.setdefault(rel, set()).add(row)
        return out

    def has(self, relation: str, *args: Value) -> bool:
        """Whether ``relation(args...)`` is currently present (entities as EntityRef)."""
        return tuple_key(relation, args) in self._tuples

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> ChangefeedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
