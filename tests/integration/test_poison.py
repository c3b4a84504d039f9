"""Poison input against ``rune run --kafka`` on the real broker: every record below leaves the
service running, a restart goes over it cleanly (no crash loop, no second dead letter), and
decisions stay what the accepted facts and bundles say."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from rune.config import Topics
from rune.connectors.partitioner import default_partition
from rune.streams import event_key
from tests.integration.processes import (
    Client,
    Rune,
    create_topics,
    delete_topics,
    request,
    wait_until,
)

BUNDLE = {
    "version": 1,
    "datalog": 'allow(P, Action::"read", R) :- member(P, G), reader(G, R).',
    "cedar": "",
}
BIG = 1_200_000  # over 1 MiB: larger than Kafka's default message size limit
LARGE_TOPICS = {"max.message.bytes": str(3 * 1024 * 1024)}


def uid(t: str, i: str) -> dict[str, str]:
    return {"type": t, "id": i}


def member(user: str, group: str) -> dict[str, Any]:
    return {"op": "assert", "fact": ["member", uid("User", user), uid("Group", group)]}


def reader(group: str, doc: str) -> dict[str, Any]:
    return {"op": "assert", "fact": ["reader", uid("Group", group), uid("Doc", doc)]}


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    made = create_topics(
        kafka_bootstrap,
        partitions=2,
        configs={"facts": LARGE_TOPICS, "requests": LARGE_TOPICS, "policies": LARGE_TOPICS},
    )
    yield made
    delete_topics(kafka_bootstrap, made)


def decide(
    c: Client, rid: str, user: str, doc: str, after: dict[str, dict[str, int]] | None = None
) -> dict[str, Any]:
    """The decision of one request; with ``after`` (a token from ``Client.event``) it is
    answered once that event was applied, not before (otherwise the two race)."""
    extra = {"consistency": {"at_least": after}} if after is not None else {}
    c.request({**request(rid, user, "read", doc), **extra})
    return c.decisions([rid])[rid][-1]


def test_records_over_a_megabyte_are_dead_lettered_cut_and_not_again_after_a_restart(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = Client(kafka_bootstrap, topics, max_bytes=4 * 1024 * 1024)
    c.bundle(BUNDLE)
    c.event(member("alice", "eng"))
    c.event(reader("eng", "design"))
    small_bundles = {"stream": {"max_bundle_bytes": 1024 * 1024}}
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log", settings=small_bundles).start()
    try:
        rune.wait_ready()
        huge_entity = {
            "op": "upsert",
            "entity": {"uid": uid("User", "bob"), "attrs": {"bio": "x" * BIG}, "parents": []},
        }
        c.event(huge_entity)
        c.request(
            {**request("huge-with-id", "alice", "read", "design"), "context": {"x": "y" * BIG}}
        )
        c.request(orjson.dumps({"padding": "z" * BIG}))  # no id anywhere
        c.bundle({**BUNDLE, "version": 2, "datalog": "// " + "w" * BIG})
        answer = c.decisions(["huge-with-id"])["huge-with-id"][-1]
        assert answer["decision"] == "deny" and "exceeds" in answer["error"]
        assert decide(c, "after", "alice", "design")["decision"] == "allow"  # v1 still active

        letters = c.dead_letters()
        by_stage = sorted(d["stage"] for d in letters)
        assert by_stage == ["ingest", "policy", "serve"], letters
        for d in letters:
            assert d["truncated"] is True and len(orjson.dumps(d)) < 200_000
            cut = base64.b64decode(d["value_b64"])
            assert len(cut) < d["value_bytes"] and d["value_bytes"] > BIG
        assert rune.alive()
        assert rune.stop() == 0

        again = Rune(kafka_bootstrap, topics, tmp_path / "rune2.log", settings=small_bundles)
        again.start()
        try:
            again.wait_ready()  # replayed the huge fact and bundle: no crash
            assert decide(c, "after-restart", "alice", "design")["decision"] == "allow"
            assert len(c.dead_letters()) == 3  # the replay published no second dead letter
            assert again.alive()
        finally:
            again.stop()
    finally:
        if rune.alive():
            rune.kill()


def nested(depth: int) -> bytes:
    """JSON nested ``depth`` objects deep (written by hand: encoders refuse such depths)."""
    return b'{"a": ' * depth + b"1" + b"}" * depth


def test_deeply_nested_bundle_request_and_event_are_refused_not_fatal(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = Client(kafka_bootstrap, topics)
    c.bundle(BUNDLE)
    c.event(member("alice", "eng"))
    c.event(reader("eng", "design"))
    # a 300-level schema, a 20,000-level request, a 300-level entity attribute
    c.bundle(b'{"version": 2, "datalog": "", "cedar": "", "schema": ' + nested(300) + b"}")
    c.request(b'{"id": "deep", "context": ' + nested(20_000) + b"}")
    carl = {"op": "upsert", "entity": {"uid": uid("User", "carl")}}
    key = event_key(carl)
    c.send(
        topics.facts,
        b'{"op": "upsert", "entity": {"uid": {"type": "User", "id": "carl"}, "attrs": '
        + nested(300)
        + b', "parents": []}}',
        key,
        partition=default_partition(key, 2),
    )
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log").start()
    try:
        rune.wait_ready()
        assert decide(c, "ok", "alice", "design")["decision"] == "allow"  # v1 active
        wait_until(lambda: len(c.dead_letters()) >= 3, what="three dead letters")
        errors = {d["stage"]: d["error"] for d in c.dead_letters()}
        assert "nests deeper" in errors["policy"]
        assert "JSON" in errors["serve"] or "deep" in errors["serve"]
        assert "deeper" in errors["ingest"]
        assert rune.stop() == 0
        again = Rune(kafka_bootstrap, topics, tmp_path / "rune2.log").start()
        try:
            again.wait_ready()
            assert decide(c, "ok2", "alice", "design")["decision"] == "allow"
            assert len(c.dead_letters()) == 3
        finally:
            again.stop()
    finally:
        if rune.alive():
            rune.kill()


def test_wrongly_keyed_and_wrongly_placed_facts_never_reach_the_views(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = Client(kafka_bootstrap, topics)
    c.bundle(BUNDLE)
    c.event(reader("eng", "design"))
    c.event(member("alice", "eng"))
    c.event(member("carol", "eng"))
    # bob's membership under alice's key: not applied, and alice's key now holds a record
    # that is not hers, so her membership goes (as it would once compaction ran)
    c.event(member("bob", "eng"), key=event_key(member("alice", "eng")))
    # dave's membership in the partition its key does not belong to
    key = event_key(member("dave", "eng"))
    wrong = 1 - default_partition(key, 2)
    c.event(member("dave", "eng"), partition=wrong)
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log").start()
    try:
        rune.wait_ready()
        got = {u: decide(c, f"r-{u}", u, "design")["decision"] for u in ("alice", "bob", "carol",
                                                                           "dave")}  # fmt: skip
        assert got == {"alice": "deny", "bob": "deny", "carol": "allow", "dave": "deny"}
        errors = sorted(d["error"] for d in c.dead_letters())
        assert len(errors) == 2
        assert any("is not the key of its event" in e for e in errors)
        assert any("default partitioner" in e for e in errors)
        # a key written with other JSON escapes still matches (compared by meaning)
        escaped = b'f:["member",{"id":"\\u00e9mile","type":"User"},{"id":"eng","type":"Group"}]'
        token = c.event(
            member("\u00e9mile", "eng"), key=escaped, partition=default_partition(escaped, 2)
        )
        assert decide(c, "r-emile", "\u00e9mile", "design", after=token)["decision"] == "allow"
    finally:
        rune.stop()


def compacted_away(c: Client, topic: str, offset: int) -> bool:
    return all(r.offset != offset for r in c.read(topic))


def test_a_rejected_bundle_cannot_erase_the_active_one_after_compaction(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    eager = {  # compact as soon as a segment closes
        "segment.ms": "200",
        "min.cleanable.dirty.ratio": "0.0001",
        "delete.retention.ms": "100",
        "min.compaction.lag.ms": "0",
    }
    topics = create_topics(kafka_bootstrap, 2, {"policies": eager})
    try:
        c = Client(kafka_bootstrap, topics)
        c.event(member("alice", "eng"))
        c.event(reader("eng", "design"))
        valid = c.bundle(BUNDLE)
        rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log", http=True).start()
        try:
            rune.wait_ready()
            c.bundle({**BUNDLE, "version": 2, "datalog": "allow(P, A) :- nope("})  # rejected
            wait_until(lambda: len(c.dead_letters()) == 1, what="the rejection")

            def roll() -> bool:  # records under other keys close segments for the cleaner
                c.send(topics.policies, None, f"filler-{time.monotonic_ns()}".encode())
                return compacted_away(c, topics.policies, valid)

            wait_until(roll, deadline_s=90, what="compaction of the valid bundle's record")
            assert rune.stop() == 0
            again = Rune(kafka_bootstrap, topics, tmp_path / "rune2.log", http=True).start()
            try:
                again.wait_ready()  # ready: a bundle is active
                status, body = again.get("/health/ready")
                assert status == 200 and body["policy_version"] == 1
                assert decide(c, "after", "alice", "design")["decision"] == "allow"
                assert len(c.dead_letters()) == 1  # the rejection is not published twice
            finally:
                again.stop()
        finally:
            if rune.alive():
                rune.kill()
    finally:
        delete_topics(kafka_bootstrap, topics)


def test_dead_letter_checksums_name_the_whole_record(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = Client(kafka_bootstrap, topics)
    c.bundle(BUNDLE)
    junk = b"\x00not json at all" * 10
    key = event_key(member("zed", "eng"))
    c.send(topics.facts, junk, key, partition=default_partition(key, 2))
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log").start()
    try:
        rune.wait_ready()
        [letter] = c.dead_letters()
        assert letter["value_sha256"] == hashlib.sha256(junk).hexdigest()
        assert base64.b64decode(letter["value_b64"]) == junk and letter["truncated"] is False
        assert letter["topic"] == topics.facts and letter["stage"] == "ingest"
    finally:
        rune.stop()


def test_a_15000_rule_bundle_compiles_while_decisions_and_health_go_on(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = Client(kafka_bootstrap, topics)
    c.bundle(BUNDLE)
    c.event(member("alice", "eng"))
    c.event(reader("eng", "design"))
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log", http=True).start()
    try:
        rune.wait_ready()
        rules = "\n".join(f'r{i}(X) :- member(X, G), G != Group::"g{i}".' for i in range(15_000))
        c.bundle({**BUNDLE, "version": 2, "datalog": BUNDLE["datalog"] + "\n" + rules})
        sent: list[str] = []
        lives = 0
        while rune.get("/health/ready")[1]["policy_version"] == 1:  # compiling
            rid = f"during-{len(sent)}"
            c.request(request(rid, "alice", "read", "design"))
            sent.append(rid)
            status, body = rune.get("/health/live")
            assert status == 200 and body["pid"] == rune.pid
            lives += 1
            assert rune.alive(), rune.tail()
        got = c.decisions(sent)
        decided_before_swap = [rid for rid in sent if got[rid][-1]["policy_version"] == 1]
        assert decided_before_swap, "no decision was made while the bundle compiled"
        assert all(got[rid][-1]["decision"] == "allow" for rid in sent)
        assert lives >= 1
        assert decide(c, "after", "alice", "design")["policy_version"] == 2
    finally:
        rune.stop()
