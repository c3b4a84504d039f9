"""Pure pieces of the service: record keys, offset tracking, consistency tokens."""

from __future__ import annotations

import pytest

from rune.connectors.base import Record
from rune.streams.consistency import TokenError, WaitingRoom, parse_token, satisfied
from rune.streams.errors import DecodeError
from rune.streams.keys import event_key, tombstone_event
from rune.streams.offsets import OffsetTracker

U = {"type": "User", "id": "alice"}
G = {"type": "Group", "id": "eng"}


def test_fact_key_is_canonical_and_round_trips_as_tombstone() -> None:
    a = event_key({"op": "assert", "fact": ["member", U, G]})
    b = event_key({"op": "retract", "fact": ["member", {"id": "alice", "type": "User"}, G]})
    c = event_key({"op": "assert", "fact": ["member", {"__entity": U}, G]})
    assert a == b == c and a.startswith(b"f:")
    assert tombstone_event(a) == {
        "op": "retract",
        "fact": ["member", {"id": "alice", "type": "User"}, {"id": "eng", "type": "Group"}],
    }


def test_entity_key_and_tombstone() -> None:
    k = event_key({"op": "upsert", "entity": {"uid": U, "attrs": {"x": 1}, "parents": []}})
    assert k == event_key({"op": "delete", "entity": {"uid": U}})
    assert tombstone_event(k) == {
        "op": "delete",
        "entity": {"uid": {"id": "alice", "type": "User"}},
    }


@pytest.mark.parametrize("key", [None, b"x:1", b"f:{nope", b"e:[1]"])
def test_bad_tombstone_keys(key: bytes | None) -> None:
    with pytest.raises(DecodeError):
        tombstone_event(key)


def test_offset_tracker_never_commits_past_an_unanswered_request() -> None:
    t = OffsetTracker()
    tp = ("req", 0)
    t.fetched([(tp, 5), (tp, 6), (tp, 7)])
    t.done([(tp, 5), (tp, 7)])
    assert t.committable() == {tp: 6}
    t.mark_committed({tp: 6})
    assert t.committable() == {}
    t.done([(tp, 6)])
    assert t.committable() == {tp: 8}
    assert t.in_flight == 0


def test_tokens_parse_and_compare() -> None:
    topics = frozenset({"rune.facts"})
    token = parse_token({"consistency": {"at_least": {"rune.facts": {"0": 4}}}}, topics)
    assert token == {"rune.facts": {"0": 4}}
    assert not satisfied(token, {"rune.facts": {"0": 3}})
    assert satisfied(token, {"rune.facts": {"0": 4, "1": 0}})
    assert parse_token({}, topics) is None
    with pytest.raises(TokenError):
        parse_token({"consistency": {"at_least": {"other": {"0": 1}}}}, topics)
    with pytest.raises(TokenError):
        parse_token({"consistency": {"at_least": {"rune.facts": {"0": "x"}}}}, topics)


def test_waiting_room_releases_ready_and_expired() -> None:
    room = WaitingRoom()
    rec = Record("req", 0, 0, None, b"{}")
    room.add(rec, {"id": "a"}, {"f": {"0": 3}}, deadline=10.0)
    room.add(rec, {"id": "b"}, {"f": {"0": 9}}, deadline=5.0)
    assert room.next_deadline() == 5.0
    ready, expired = room.take({"f": {"0": 3}}, now=1.0)
    assert [w.request["id"] for w in ready] == ["a"] and not expired
    ready, expired = room.take({"f": {"0": 3}}, now=6.0)
    assert not ready and [w.request["id"] for w in expired] == ["b"]
    assert len(room) == 0


def test_topic_specs_follow_partitions_and_replicas() -> None:
    from rune.config import load_settings
    from rune.streams.app import topic_specs

    single = {s.name: s for s in topic_specs(load_settings(None, {"kafka": {"partitions": 4}}))}
    assert single["rune.facts"].partitions == 4 and single["rune.policies"].partitions == 1
    assert single["rune.facts"].replication == 1
    assert dict(single["rune.facts"].configs) == {"cleanup.policy": "compact"}
    assert dict(single["rune.decisions"].configs) == {}
    replicated = topic_specs(load_settings(None, {"kafka": {"replication_factor": 3}}))
    assert all(s.replication == 3 for s in replicated)
    assert all(s.configs["min.insync.replicas"] == "2" for s in replicated)
