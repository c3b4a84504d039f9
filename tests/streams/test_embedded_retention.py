"""The stream service and ``rune serve`` on an embedded log with small retention bounds: the
log stays bounded over a long run, no request goes unanswered, and a restart from the
compacted topics rebuilds the same state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from rune.config import EmbeddedLogSettings, Settings, load_settings
from rune.connectors.base import Outgoing, Position
from rune.connectors.embedded import RECORD_OVERHEAD, EmbeddedLog, EmbeddedReader, Retention
from rune.streams import Service, event_key
from tests.streams.harness import BUNDLE, A, D, fact

RECORDS = 100  # retention_records per partition
SEGMENT = 10_000  # segment_bytes
PER_SEGMENT = SEGMENT // RECORD_OVERHEAD  # records in a segment at most
SMALL = Retention(
    retention_bytes=-1,
    retention_records=RECORDS,
    retention_ms=-1,
    segment_bytes=SEGMENT,
    segment_ms=3_600_000,
)


def user(i: int) -> dict[str, str]:
    return {"type": "User", "id": f"u{i}"}


async def read_ids(reader: EmbeddedReader, want: set[str]) -> None:
    """Consume decisions until every id in ``want`` was seen (a fetch returns as soon as
    anything is appended to the log, maybe empty)."""
    deadline = time.monotonic() + 10
    while want:
        assert time.monotonic() < deadline, f"no decision for {sorted(want)[:3]}"
        for r in await reader.fetch(1000, 1.0):
            want.discard(orjson.loads(r.value or b"null")["id"])


async def until_stepped(service: Service, done: Callable[[], bool]) -> None:
    """Wait, step by applied step of ingest, until ``done()`` holds."""
    async with asyncio.timeout(10):
        while True:
            step = service.ctx.next_step  # grab, check, then await: no step is missed
            if done():
                return
            await step.wait()


async def applied(service: Service, positions: list[Position]) -> None:
    """Wait until ingest applied the records at ``positions``: its reader is then past them,
    so compaction may clean them (a reader still behind holds the cleaner point back)."""
    az = service.ctx.authorizer

    def done() -> bool:
        marks = az.watermark  # a copy
        return all(marks.get(p.topic, {}).get(str(p.partition), -1) >= p.offset for p in positions)

    await until_stepped(service, done)


def settings_for(**more: Any) -> Settings:
    return load_settings(
        None,
        {
            "kafka": {"partitions": 2},
            "stream": {"changefeed_relations": ("ok",)},
            "logging": {"decisions": "none"},
            **more,
        },
    )


async def test_a_long_run_keeps_every_topic_bounded_and_answers_every_request() -> None:
    log = EmbeddedLog(SMALL)
    settings = settings_for()
    t = settings.topics
    service = Service(settings, log, notice=lambda m: None)
    task = asyncio.create_task(service.run())
    await service.ctx.ready.wait()
    decisions = await log.assign([t.decisions])  # a consumer keeping up, as an auditor would
    # bundles compile off the loop, in ingest's stage: facts sent meanwhile wait for it
    await log.produce([Outgoing(t.policies, b"default", orjson.dumps(BUNDLE))])
    async with asyncio.timeout(10):  # an activation is no ingest step: poll for it
        while service.ctx.stats.bundles_loaded < 1:
            await asyncio.sleep(0.01)
    rounds, users, per_round = 60, 20, 100
    peak = dict.fromkeys([t.facts, t.requests, t.decisions, t.changes], 0)
    for n in range(rounds):
        op = "assert" if n % 2 == 0 else "retract"
        events = [fact(op, "ok", user(i), A, D) for i in range(users)]
        sent = await log.produce([Outgoing(t.facts, event_key(e), orjson.dumps(e)) for e in events])
        await applied(service, sent)  # the bound below assumes an ingest that keeps up
        ids = {f"r{n}-{i}" for i in range(per_round)}
        await log.produce(
            [
                Outgoing(
                    t.requests,
                    None,
                    orjson.dumps({"id": rid, "principal": user(0), "action": A, "resource": D}),
                )
                for rid in sorted(ids)
            ]
        )
        await read_ids(decisions, ids)
        for topic in peak:
            peak[topic] = max(peak[topic], log.stored(topic)[0])
    assert service.ctx.stats.decisions >= rounds * per_round
    appended = rounds * per_round
    bound = 2 * (RECORDS + PER_SEGMENT) + per_round  # 2 partitions, plus one round in flight
    assert peak[t.requests] <= bound < appended
    assert peak[t.decisions] <= bound < appended
    # compacted: the live keys (and 2 checkpoints) plus, per partition, what was appended
    # since the last pass: up to a segment, or as much as the clean part (ratio 0.5)
    assert peak[t.facts] <= users + 2 * 2 * PER_SEGMENT < rounds * users
    assert peak[t.changes] <= users + 2 + 2 * 2 * PER_SEGMENT
    service.stop()
    await asyncio.wait_for(task, 10)
    await decisions.close()
    # a restart reads the compacted topics from the start: the same state, nothing deleted
    final = {tuple(row) for row in service.ctx.authorizer.engine.lookup("ok", (None,) * 3)}
    assert final == set()  # the last round retracted every fact
    again = Service(settings, log, notice=lambda m: None)
    task = asyncio.create_task(again.run())
    await again.ctx.ready.wait()
    assert again.ctx.authorizer.policy_version == BUNDLE["version"]
    assert set(again.ctx.authorizer.engine.lookup("ok", (None,) * 3)) == final
    again.stop()
    await asyncio.wait_for(task, 10)


async def test_a_restart_after_compaction_sees_the_latest_facts() -> None:
    log = EmbeddedLog(SMALL)
    settings = settings_for()
    t = settings.topics
    log.create_topic(t.facts, 2, {"cleanup.policy": "compact"})
    log.create_topic(t.policies, 1, {"cleanup.policy": "compact"})
    log.append(Outgoing(t.policies, b"default", orjson.dumps(BUNDLE)))
    for _ in range(50):
        for i in range(10):
            e = fact("assert", "ok", user(i), A, D)
            log.append(Outgoing(t.facts, event_key(e), orjson.dumps(e)))
    for i in range(1, 10, 2):  # odd users deleted by tombstones
        log.append(Outgoing(t.facts, event_key(fact("assert", "ok", user(i), A, D)), None))
    log.clean()
    assert log.stored(t.facts)[0] == 5  # the even users' last assert each
    service = Service(settings, log, notice=lambda m: None)
    task = asyncio.create_task(service.run())
    await service.ctx.ready.wait()
    rows = service.ctx.authorizer.engine.lookup("ok", (None,) * 3)
    assert sorted(row[0].id for row in rows) == [f"u{i}" for i in range(0, 10, 2)]
    service.stop()
    await asyncio.wait_for(task, 10)


async def test_rune_serve_keeps_the_decision_topic_bounded() -> None:
    from rune.cli.serve import _open_log
    from rune.http.host import HttpHost

    settings = load_settings(
        None,
        {
            "server": {"port": 0, "rate_limit_per_s": 0},
            "logging": {"decisions": "none"},
            "embedded_log": {
                "retention_records": RECORDS,
                "segment_bytes": SEGMENT,
            },
        },
    )
    log = _open_log(settings, (None, ()))  # the bundled example, as `rune serve` starts
    assert isinstance(log, EmbeddedLog)
    assert log.retention(settings.topics.decisions).retention_records == RECORDS
    server = HttpHost(settings, log, notice=lambda m: None)
    task = asyncio.create_task(server.run())
    await server.listening.wait()
    await server.service.ctx.ready.wait()
    body = [{"principal": user(i), "action": A, "resource": D} for i in range(100)]
    calls = 40
    async with aiohttp.ClientSession() as session:
        for _ in range(calls):
            url = f"http://127.0.0.1:{server.port}/v1/authorize"
            async with session.post(url, data=orjson.dumps(body)) as resp:
                assert resp.status == 200
                assert len(await resp.json()) == 100
    ends = await log.end_offsets([settings.topics.decisions])
    assert sum(ends.values()) == calls * 100  # every decision was produced ...
    stored = log.stored(settings.topics.decisions)[0]
    assert (
        stored <= settings.kafka.partitions * (RECORDS + PER_SEGMENT) < calls * 100
    )  # ... few kept
    server.stop()
    await asyncio.wait_for(task, 10)


def test_the_log_defaults_are_the_settings_defaults() -> None:
    assert Retention() == Retention(**EmbeddedLogSettings().model_dump())
