"""The whole pipeline on the embedded log: ingest, serve, tokens, policy swap, dead letters,
changefeed, shutdown. No broker; polling with deadlines, never sleeps as synchronisation."""

from __future__ import annotations

import asyncio
import gc

import orjson

from rune.config import load_settings
from rune.connectors.base import Outgoing
from rune.connectors.embedded import EmbeddedLog
from rune.streams import Service, event_key
from rune.streams.changefeed import CHECKPOINT_KEY
from tests.streams.harness import BUNDLE, A, D, U, fact, running


async def test_facts_then_decisions_carry_version_and_watermark() -> None:
    async with running() as c:
        await c.bundle(BUNDLE)
        pos = await c.event(fact("assert", "ok", U, A, D))
        await c.request(
            "r1", consistency={"at_least": {"rune.facts": {str(pos.partition): pos.offset}}}
        )
        d = await c.decision("r1")
        assert d["decision"] == "allow" and d["policy_version"] == 1
        assert d["watermark"]["rune.facts"][str(pos.partition)] >= pos.offset


async def test_tombstone_retracts_and_token_sees_it() -> None:
    async with running() as c:
        await c.bundle(BUNDLE)
        await c.event(fact("assert", "ok", U, A, D))
        from rune.streams.keys import event_key

        pos = await c.event(None, key=event_key(fact("assert", "ok", U, A, D)))
        await c.request(
            "r", consistency={"at_least": {"rune.facts": {str(pos.partition): pos.offset}}}
        )
        assert (await c.decision("r"))["decision"] == "deny"


async def test_token_never_reached_is_denied_as_stale_without_blocking_others() -> None:
    async with running(token_wait_s=0.3) as c:
        await c.bundle(BUNDLE)
        await c.request("waits", consistency={"at_least": {"rune.facts": {"0": 10_000}}})
        await c.request("free")
        free = await c.decision("free")
        assert "waits" not in c.decisions() or c.decisions()["waits"]["decision"] == "deny"
        assert free["decision"] == "deny" and "error" not in free
        stale = await c.decision("waits")
        assert stale["decision"] == "deny" and "stale" in stale["error"]


async def test_bad_token_is_a_deny_with_error() -> None:
    async with running() as c:
        await c.request("bad", consistency={"at_least": {"rune.requests": {"0": 1}}})
        d = await c.decision("bad")
        assert d["decision"] == "deny" and "consistency" in d["error"]


async def test_policy_swap_and_invalid_bundle_rejected() -> None:
    async with running() as c:
        await c.bundle(BUNDLE)
        await c.event(fact("assert", "ok", U, A, D))
        await c.request("v1")
        assert (await c.decision("v1"))["decision"] == "allow"
        await c.bundle({"version": 2, "datalog": "p(X) :- .", "cedar": ""})
        await c.until(lambda: len(c.dead()) == 1)
        assert c.dead()[0]["stage"] == "policy" and "1:9" in c.dead()[0]["error"]
        await c.bundle({"version": 3, "datalog": "deny(P, A, R) :- ok(P, A, R).", "cedar": ""})
        await c.until(lambda: c.service.ctx.authorizer.policy_version == 3)
        await c.request("v3")
        d = await c.decision("v3")
        assert d["decision"] == "deny" and d["policy_version"] == 3


async def test_junk_goes_to_the_dlq_and_good_events_survive() -> None:
    async with running() as c:
        await c.bundle(BUNDLE)
        t = c.topics
        await c.raw(t.facts, b"{not json")
        await c.raw(t.facts, None, key=b"garbage")
        await c.raw(t.facts, orjson.dumps({"op": "explode"}))
        await c.event(fact("assert", "ok", U, A, D))
        await c.raw(t.policies, b"\xff\xfe")
        await c.raw(t.requests, b"[1, 2")
        await c.raw(t.requests, orjson.dumps({"id": "no-principal"}))
        await c.request("after")
        assert (await c.decision("after"))["decision"] == "allow"
        bad = await c.decision("no-principal")
        assert bad["decision"] == "deny" and "error" in bad
        await c.until(lambda: len(c.dead()) == 5)
        stages = sorted(d["stage"] for d in c.dead())
        assert stages == ["ingest", "ingest", "ingest", "policy", "serve"]
        assert all(
            {"topic", "partition", "offset", "error", "value_b64"} <= set(d) for d in c.dead()
        )


async def test_changefeed_is_the_current_set_with_checkpoints() -> None:
    bundle = {
        "version": 1,
        "datalog": "reach(X, Y) :- edge(X, Y).\nreach(X, Z) :- reach(X, Y), edge(Y, Z).",
        "cedar": "",
    }
    async with running(changefeed_relations=("reach",), checkpoint_interval_s=0.05) as c:
        await c.bundle(bundle)
        await c.event(fact("assert", "edge", "a", "b"))
        await c.event(fact("assert", "edge", "b", "c"))
        last = await c.event(fact("retract", "edge", "a", "b"))

        def state() -> dict[bytes, bytes]:
            out: dict[bytes, bytes] = {}
            for r in c.log.records(c.topics.changes):
                if r.key == CHECKPOINT_KEY or r.key is None:
                    continue
                if r.value is None:
                    out.pop(r.key, None)
                else:
                    out[r.key] = r.value
            return out

        def checkpointed() -> bool:
            for r in reversed(c.log.records(c.topics.changes)):
                if r.key == CHECKPOINT_KEY and r.value is not None:
                    wm = orjson.loads(r.value)["watermark"]
                    return wm.get("rune.facts", {}).get(str(last.partition), -1) >= last.offset
            return False

        await c.until(checkpointed)
        assert set(state()) == {b'["reach","b","c"]'}


async def test_restart_rebuilds_views_and_reconciles_changefeed() -> None:
    log = EmbeddedLog()
    settings = load_settings(
        None, {"kafka": {"partitions": 1}, "stream": {"changefeed_relations": ("ok",)}}
    )
    s1 = Service(settings, log, notice=lambda m: None)
    t1 = asyncio.create_task(s1.run())
    await s1.ctx.ready.wait()
    await log.produce([Outgoing("rune.policies", b"b", orjson.dumps(BUNDLE))])
    ok = fact("assert", "ok", U, A, D)
    await log.produce([Outgoing("rune.facts", event_key(ok), orjson.dumps(ok))])
    while s1.ctx.stats.events_applied < 1:
        await asyncio.sleep(0.01)
    s1.stop()
    await asyncio.wait_for(t1, 10)
    # a second run over the same log: same views, committed request offsets respected
    s2 = Service(settings, log, notice=lambda m: None)
    t2 = asyncio.create_task(s2.run())
    await s2.ctx.ready.wait()
    assert s2.ctx.authorizer.policy_version == 1
    row = next(iter(s1.ctx.authorizer.engine.lookup("ok", (None, None, None))))
    assert s2.ctx.authorizer.engine.contains("ok", row)
    s2.stop()
    await asyncio.wait_for(t2, 10)


async def test_heap_is_frozen_after_catch_up_and_after_a_bundle_swap() -> None:
    gc.unfreeze()
    async with running() as c:
        assert gc.get_freeze_count() > 0  # settled before readiness
        await c.bundle(BUNDLE)
        await c.until(lambda: c.service.ctx.authorizer.policy_version == 1)
        gc.unfreeze()
        await c.bundle({**BUNDLE, "version": 2})
        await c.until(lambda: c.service.ctx.authorizer.policy_version == 2)
        assert gc.get_freeze_count() > 0  # settled again after the swap
    gc.unfreeze()
    async with running(gc_freeze=False) as c:
        await c.bundle(BUNDLE)
        await c.until(lambda: c.service.ctx.authorizer.policy_version == 1)
        assert gc.get_freeze_count() == 0


async def test_whole_number_floats_on_the_topics_are_integers_as_over_http() -> None:
    bundle = {"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R), level(P, 3).", "cedar": ""}
    async with running() as c:
        await c.bundle(bundle)
        await c.event(fact("assert", "ok", U, A, D))
        level = fact("assert", "level", U, 3)
        value = orjson.dumps(level).replace(b"3]", b"3.0]")
        [pos] = await c.log.produce([Outgoing(c.topics.facts, event_key(level), value)])
        token = {"at_least": {pos.topic: {str(pos.partition): pos.offset}}}
        await c.request("lvl", consistency=token)
        assert (await c.decision("lvl"))["decision"] == "allow"
        assert not c.dead()
