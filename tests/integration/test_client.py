"""rune.client against ``rune run --kafka`` in its own process, on the real broker: keyed and
placed facts, tokens in requests, decisions deduplicated, the changefeed complete."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rune.client import (
    ChangefeedReader,
    ClientError,
    DecisionReader,
    EntityRef,
    FactProducer,
    Requests,
    Token,
)
from rune.config import Topics
from rune.connectors.partitioner import default_partition
from rune.streams import event_key
from tests.integration.processes import Client, Rune, create_topics, delete_topics

TUTORIAL = Path(__file__).resolve().parents[2] / "rune" / "examples" / "tutorial"
ZOE = EntityRef("User", "zoë")  # non-ASCII: the key is canonical JSON without escapes
ENG = EntityRef("Group", "eng")
DESIGN = EntityRef("Doc", "design")
READ = EntityRef("Action", "read")


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    t = create_topics(kafka_bootstrap, partitions=3)
    yield t
    delete_topics(kafka_bootstrap, t)


@pytest.fixture
def service(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> Iterator[Rune]:
    settings = {"stream": {"changefeed_relations": ["can_read"], "checkpoint_interval_s": 0.2}}
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log", settings=settings).start()
    yield rune
    assert rune.stop() == 0, rune.tail()


def _tutorial_events() -> list[dict[str, object]]:
    return [orjson.loads(line) for line in (TUTORIAL / "facts.jsonl").read_bytes().splitlines()]


def test_facts_tokens_requests_decisions_changefeed(
    kafka_bootstrap: str, topics: Topics, service: Rune
) -> None:
    with FactProducer(kafka_bootstrap, topics) as facts:
        bundle_token = facts.publish_bundle(TUTORIAL / "policies")
        receipt = facts.assert_fact("member", ZOE, ENG)
        facts.send_events(_tutorial_events())
        token = facts.flush()
        zoe_token = receipt.token()
    assert bundle_token.offsets == {topics.policies: {0: 0}}
    assert token.offsets[topics.policies] == {0: 0}
    assert sum(len(p) for p in token.offsets.values()) >= 2
    # the record is where ingest wants it: canonical key, murmur2 partition
    [(partition, offset)] = list(zoe_token.offsets[topics.facts].items())
    records = Client(kafka_bootstrap, topics).read(topics.facts)
    [zoe] = [r for r in records if r.partition == partition and r.offset == offset]
    key = event_key({"op": "assert", "fact": ["member", ZOE._asdict(), ENG._asdict()]})
    assert zoe.key == key and "zoë".encode() in key
    assert partition == default_partition(key, 3)

    with Requests(kafka_bootstrap, topics) as requests:
        allowed = requests.check(ZOE, READ, 'Doc::"design"', token=token, timeout=60)
        assert allowed.allowed and allowed.error is None, allowed
        assert token.satisfied_by(allowed.watermark)
        assert allowed.policy_version == 1
        with FactProducer(kafka_bootstrap, topics) as facts:
            facts.retract_fact("member", ZOE, ENG)
            retracted = facts.flush()
        denied = requests.check(ZOE, READ, DESIGN, token=retracted, timeout=60)
        assert not denied.allowed and denied.error is None, denied
        assert retracted.satisfied_by(denied.watermark)
        ids = [allowed.id, denied.id]

    # a duplicate (at-least-once redelivery) is read once
    dup = Client(kafka_bootstrap, topics)
    dup.send(topics.decisions, orjson.dumps(allowed.to_json()), str(allowed.id).encode())
    dup.send(topics.decisions, b"not a decision", b"x")
    with DecisionReader(kafka_bootstrap, topics, from_beginning=True) as reader:
        seen: list[str | None] = []
        deadline = time.monotonic() + 60
        while not (reader.caught_up and reader.duplicates and reader.malformed):
            assert time.monotonic() < deadline, (seen, reader.duplicates, reader.malformed)
            seen += [d.id for d in reader.poll(0.5)]
        assert sorted(str(i) for i in seen if i in ids) == sorted(map(str, ids))  # once each
        assert reader.duplicates == 1 and reader.malformed == 1

    with ChangefeedReader(kafka_bootstrap, topics) as feed:
        feed.wait_complete(retracted, timeout=60)
        rows = feed.tuples("can_read")
        assert (EntityRef("User", "alice"), DESIGN) in rows
        assert (ZOE, DESIGN) not in rows
        assert feed.has("can_read", EntityRef("User", "alice"), DESIGN)
        assert feed.watermark is not None and retracted.satisfied_by(feed.watermark)
        assert feed.policy_version == 1


def test_invalid_input_is_refused_before_producing(kafka_bootstrap: str, topics: Topics) -> None:
    with FactProducer(kafka_bootstrap, topics) as facts:
        with pytest.raises(ClientError, match="invalid event"):
            facts.assert_fact("Member", ZOE, ENG)  # relation names are lower case
        with pytest.raises(ClientError, match="invalid event"):
            facts.assert_fact("member", ZOE, 1.5)
        bad = {"version": 2, "datalog": "allow(X) :- member(X, Y).", "cedar": ""}
        with pytest.raises(ClientError, match="bundle rejected"):
            facts.publish_bundle(bad)
        assert facts.produced == 0
        assert facts.flush() == Token()
    with pytest.raises(ClientError, match="not available"):
        FactProducer(kafka_bootstrap, Topics(facts="rune-test.no-such-topic")).assert_fact(
            "member", ZOE, ENG
        )
