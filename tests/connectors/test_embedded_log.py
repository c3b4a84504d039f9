"""The embedded log's retention and compaction: offsets keep their meaning, open readers and
their groups lose nothing they have not read, and a reader from the start sees the current
state of a compacted topic."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rune.connectors.base import ConnectorError, Outgoing, Record
from rune.connectors.embedded import RECORD_OVERHEAD, EmbeddedLog, EmbeddedReader, Retention
from rune.connectors.files import FileLog

COMPACT = {"cleanup.policy": "compact"}
TINY = Retention(
    retention_bytes=-1,
    retention_records=20,
    retention_ms=-1,
    segment_bytes=5 * (RECORD_OVERHEAD + 8),  # 5 records of "v-NNNNNN" per segment
    segment_ms=3_600_000,
)


def value(i: int) -> bytes:
    return b"v-%06d" % i


async def drain(reader: EmbeddedReader, batch: int = 7) -> list[Record]:
    out: list[Record] = []
    while chunk := await reader.fetch(batch, 0):
        out.extend(chunk)
    return out


def fold(records: list[Record]) -> dict[bytes, bytes]:
    """Last value per key, tombstones removing (what a compacted topic stands for)."""
    state: dict[bytes, bytes] = {}
    for r in records:
        if r.key is None:
            continue
        if r.value is None:
            state.pop(r.key, None)
        else:
            state[r.key] = r.value
    return state


def offsets(records: list[Record]) -> list[int]:
    return [r.offset for r in records]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- stored values -------------------------------------------------------------------------


async def test_values_and_keys_are_stored_as_exact_copies() -> None:
    log = EmbeddedLog()
    log.create_topic("t")
    key, val = orjson.dumps(["k"]), orjson.dumps({"a": 1})
    assert bytes(val) is val  # why a plain bytes() would not do
    await log.produce([Outgoing("t", key, val), Outgoing("t", None, None)])
    [r, tomb] = log.records("t")
    assert (r.key, r.value) == (key, val)
    assert r.key is not key and r.value is not val
    assert (tomb.key, tomb.value) == (None, None)
    assert log.stored("t") == (2, 2 * RECORD_OVERHEAD + len(key) + len(val))


# -- delete policy -------------------------------------------------------------------------


async def test_retention_drops_old_segments_and_keeps_offsets() -> None:
    log = EmbeddedLog(TINY)
    log.create_topic("t")
    positions = [log.append(Outgoing("t", None, value(i))) for i in range(100)]
    assert [p.offset for p in positions] == list(range(100))
    assert await log.end_offsets(["t"]) == {("t", 0): 100}
    start = (await log.start_offsets(["t"]))[("t", 0)]
    kept = log.records("t")
    assert 0 < start <= 100 - 20
    assert offsets(kept) == list(range(start, 100))  # a suffix, offsets unchanged
    assert [r.value for r in kept] == [value(i) for i in range(start, 100)]
    assert 20 <= len(kept) <= 20 + 5  # the bound plus at most one segment
    reader = await log.assign(["t"])
    assert await reader.positions() == {("t", 0): start}
    assert offsets(await drain(reader)) == list(range(start, 100))
    assert await reader.positions() == {("t", 0): 100}


async def test_retention_by_bytes_and_by_time() -> None:
    clock = Clock()
    log = EmbeddedLog(TINY, clock=clock)
    log.create_topic("bytes", configs={"retention.bytes": str(10 * (RECORD_OVERHEAD + 8))})
    log.create_topic(
        "time", configs={"retention.ms": "60000", "segment.ms": "10000", "segment.bytes": "99999"}
    )
    assert log.retention("bytes").retention_bytes == 10 * (RECORD_OVERHEAD + 8)
    assert log.retention("time").retention_ms == 60_000
    for i in range(10):  # one record per 10 s: each one rolls a new segment
        log.append(Outgoing("time", None, value(i)))
        clock.now += 10
    assert log.stored("time")[0] < 10
    assert offsets(log.records("time"))[0] >= 3  # older than a minute: gone
    for i in range(15):
        log.append(Outgoing("bytes", None, value(i)))
    assert log.stored("bytes")[0] <= 15  # 10 by bytes, plus the active segment


async def test_topic_configs_are_checked() -> None:
    log = EmbeddedLog()
    with pytest.raises(ConnectorError, match=r"retention\.ms"):
        log.create_topic("a", configs={"retention.ms": "soon"})
    with pytest.raises(ConnectorError, match=r"cleanup\.policy"):
        log.create_topic("b", configs={"cleanup.policy": "forever"})
    log.create_topic("c", configs={"cleanup.policy": "compact,delete", "segment.bytes": "99"})
    assert log.retention("c").segment_bytes == 99
    assert log.topic_config("c")["cleanup.policy"] == "compact,delete"


async def test_open_readers_hold_retention_back() -> None:
    log = EmbeddedLog(TINY)
    log.create_topic("t")
    reader = await log.assign(["t"])
    for i in range(200):
        log.append(Outgoing("t", None, value(i)))
    assert log.stored("t")[0] == 200  # the reader has read nothing yet
    assert len(await reader.fetch(150, 0)) == 150
    log.append(Outgoing("t", None, value(200)))
    log.clean()
    assert offsets(log.records("t"))[0] <= 150  # what it has not read is still there
    assert offsets(await drain(reader)) == list(range(150, 201))
    await reader.close()
    for i in range(201, 260):
        log.append(Outgoing("t", None, value(i)))
    assert log.stored("t")[0] <= 25  # closed: bounded again


async def test_a_group_loses_no_request_it_has_not_consumed() -> None:
    log = EmbeddedLog(TINY)
    log.create_topic("req", 2)
    reader = await log.subscribe("req", "g")
    seen: list[Record] = []
    for i in range(300):
        log.append(Outgoing("req", None, value(i)))
        if i % 40 == 39:  # consume and commit in bursts, behind the producer
            got = await reader.fetch(30, 0)
            seen.extend(got)
            await reader.commit({(r.topic, r.partition): r.offset + 1 for r in got})
    seen.extend(await drain(reader))
    for p in (0, 1):
        assert offsets([r for r in seen if r.partition == p]) == list(range(150))
    assert sorted(r.value or b"" for r in seen) == [value(i) for i in range(300)]
    # the group's committed offset holds retention while it has an open reader
    start = await log.start_offsets(["req"])
    assert all(s < 150 for s in start.values())
    await reader.commit(start)
    for i in range(300, 400):
        log.append(Outgoing("req", None, value(i)))
    assert await log.start_offsets(["req"]) == start
    await reader.close()
    again = await log.subscribe("req", "g")
    assert await again.positions() == start  # replays from the committed offsets


async def test_a_reader_before_the_log_start_continues_at_the_start() -> None:
    log = EmbeddedLog(TINY)
    log.create_topic("req")
    reader = await log.subscribe("req", "g")
    await reader.commit({("req", 0): 3})
    await reader.close()  # no open reader: the committed offset no longer holds retention
    for i in range(100):
        log.append(Outgoing("req", None, value(i)))
    start = (await log.start_offsets(["req"]))[("req", 0)]
    assert start > 3
    again = await log.subscribe("req", "g")
    assert await again.positions() == {("req", 0): start}
    assert offsets(await drain(again))[0] == start


async def test_file_inputs_keep_every_record() -> None:
    import io

    log = FileLog(TINY)
    log.create_topic("in")
    lines = b"".join(b'{"n": %d}\n' % i for i in range(100))
    assert log.load_jsonl("in", io.BytesIO(lines), "in.jsonl") == 100
    assert log.stored("in")[0] == 100
    assert log.retention("in").retention_records == -1


# -- compaction ----------------------------------------------------------------------------


def compacted_log(retention: Retention = TINY, partitions: int = 1) -> EmbeddedLog:
    log = EmbeddedLog(retention)
    log.create_topic("c", partitions, COMPACT)
    return log


async def test_a_reader_from_the_start_sees_the_current_state() -> None:
    log = compacted_log()
    appended: list[Record] = []
    for i in range(60):
        key = b"k%d" % (i % 7)
        val = None if i % 5 == 4 else value(i)  # some tombstones
        log.append(Outgoing("c", key, val))
        appended.append(Record("c", 0, i, key, val))
    log.append(Outgoing("c", b"k0", None))  # the last record is a tombstone
    appended.append(Record("c", 0, 60, b"k0", None))
    log.clean()
    stored = log.records("c")
    assert len(stored) == len(fold(appended))  # one record per live key, no tombstone
    assert all(r.value is not None for r in stored)
    assert await log.end_offsets(["c"]) == {("c", 0): 61}
    assert await log.start_offsets(["c"]) == {("c", 0): 0}  # compaction keeps the log start
    reader = await log.assign(["c"])
    got = await drain(reader, batch=2)
    assert fold(got) == fold(appended)
    assert b"k0" not in fold(got)
    assert offsets(got) == sorted(offsets(got))
    assert await reader.positions() == {("c", 0): 61}  # past the dropped tombstone
    log.append(Outgoing("c", b"k1", b"new"))
    assert [(r.offset, r.value) for r in await reader.fetch(10, 0)] == [(61, b"new")]


async def test_compaction_stops_at_the_lowest_open_reader() -> None:
    log = compacted_log()
    slow = await log.assign(["c"])
    for i in range(40):
        log.append(Outgoing("c", b"k%d" % (i % 4), value(i)))
    assert log.stored("c")[0] == 40  # nothing read yet: nothing compacted
    assert len(await slow.fetch(30, 0)) == 30
    log.append(Outgoing("c", b"k0", None))  # tombstone at 40, not yet read by `slow`
    log.clean()
    stored = log.records("c")
    below = [r for r in stored if r.offset < 30]
    assert len(below) <= 4  # below the cleaner point: the last record per key at most
    assert offsets([r for r in stored if r.offset >= 30]) == list(range(30, 41))
    assert offsets(await drain(slow)) == list(range(30, 41))  # every record it had not read
    log.clean()  # now every reader has passed the tombstone
    assert all(r.key != b"k0" for r in log.records("c"))


async def test_compaction_runs_amortized_on_append(monkeypatch: pytest.MonkeyPatch) -> None:
    log = compacted_log(Retention(segment_bytes=20 * (RECORD_OVERHEAD + 8)))
    passes = 0
    compact = EmbeddedLog._compact

    def counting(*args: object) -> None:
        nonlocal passes
        passes += 1
        compact(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(EmbeddedLog, "_compact", counting)
    for i in range(20_000):
        log.append(Outgoing("c", b"k%d" % (i % 50), value(i)))
    assert log.stored("c")[0] <= 50 + 2 * 20 + 50  # live keys, plus the dirty part
    assert 0 < passes <= 20_000 // 20  # at most once per segment's worth of appends
    reader = await log.assign(["c"])
    assert fold(await drain(reader)) == {b"k%d" % k: value(19_950 + k) for k in range(50)}


async def test_a_reader_of_a_topic_compacted_to_nothing_is_at_the_end() -> None:
    log = compacted_log()
    log.append(Outgoing("c", b"k", b"1"))
    log.append(Outgoing("c", b"k", None))
    log.clean()
    assert log.records("c") == []
    assert await log.start_offsets(["c"]) == {("c", 0): 0}
    reader = await log.assign(["c"])
    assert await reader.positions() == {("c", 0): 2}  # caught up without fetching
    assert await reader.fetch(10, 0) == []
    # a group resuming in the hole left by the tombstone is at the end too
    log.append(Outgoing("c", b"j", b"1"))
    log.append(Outgoing("c", b"k", b"2"))
    log.append(Outgoing("c", b"k", None))
    group = await log.subscribe("c", "g")
    await group.commit({("c", 0): 4})
    await group.close()
    await reader.close()
    log.clean()
    assert offsets(log.records("c")) == [2]
    again = await log.subscribe("c", "g")
    assert await again.positions() == {("c", 0): 5}


async def test_records_without_a_key_survive_compaction() -> None:
    log = compacted_log()
    log.append(Outgoing("c", None, b"bad line"))
    log.append(Outgoing("c", b"k", b"1"))
    log.append(Outgoing("c", b"k", b"2"))
    log.clean()
    assert [(r.offset, r.value) for r in log.records("c")] == [(0, b"bad line"), (2, b"2")]


# -- property: any interleaving of appends, reads, commits and cleaning ---------------------

KINDS = ["append"] * 5 + ["open", "fetch", "fetch", "commit", "close", "clean"]
Step = tuple[str, int, int]


@dataclass
class Opened:
    reader: EmbeddedReader
    from_start: bool
    ends: dict[tuple[str, int], int]
    """End offsets when it opened: it must read every record from there on."""
    seen: list[Record] = field(default_factory=list)


@dataclass
class Model:
    log: EmbeddedLog
    appended: list[Record] = field(default_factory=list)
    readers: list[Opened] = field(default_factory=list)

    async def apply(self, step: Step) -> None:
        kind, a, b = step
        if kind == "append":
            key, val = b"k%d" % a, value(len(self.appended)) if b % 3 else None
            pos = self.log.append(Outgoing("c", key, val))
            self.appended.append(Record("c", pos.partition, pos.offset, key, val))
        elif kind == "open":
            group = a % 2 == 1
            reader = await (self.log.subscribe("c", "g") if group else self.log.assign(["c"]))
            self.readers.append(Opened(reader, not group, await self.log.end_offsets(["c"])))
        elif kind == "clean":
            self.log.clean()
        elif self.readers:
            opened = self.readers[a % len(self.readers)]
            if kind == "fetch":
                opened.seen.extend(await opened.reader.fetch(b + 1, 0))
            elif kind == "commit":
                await opened.reader.commit(await opened.reader.positions())
            else:
                self.readers.remove(opened)
                await opened.reader.close()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 5), st.integers(0, 9)), max_size=80),
    st.integers(1, 6),
    st.sampled_from([0.1, 0.5, 1.0]),
    st.sampled_from(["compact", "compact,delete"]),
)
def test_the_compacted_view_is_the_last_value_per_key(
    steps: list[Step], per_segment: int, ratio: float, policy: str
) -> None:
    retention = Retention(
        retention_bytes=-1,
        retention_records=-1,
        retention_ms=-1,
        segment_bytes=per_segment * (RECORD_OVERHEAD + 2 + 8),
        segment_ms=3_600_000,
        min_cleanable_dirty_ratio=ratio,
    )

    async def scenario() -> None:
        log = EmbeddedLog(retention)
        log.create_topic("c", 2, {"cleanup.policy": policy})
        m = Model(log)
        for step in steps:
            await m.apply(step)
        ends = await log.end_offsets(["c"])
        for p in (0, 1):
            assert ends[("c", p)] == sum(1 for r in m.appended if r.partition == p)
        fresh = await log.assign(["c"])
        assert fold(await drain(fresh)) == fold(m.appended)
        for opened in m.readers:
            opened.seen.extend(await drain(opened.reader))
            if opened.from_start:
                assert fold(opened.seen) == fold(m.appended)
            for p in (0, 1):  # everything appended since it opened, in order, without a gap
                since = opened.ends[("c", p)]
                got = [r.offset for r in opened.seen if r.partition == p and r.offset >= since]
                assert got == list(range(since, ends[("c", p)]))

    asyncio.run(scenario())
