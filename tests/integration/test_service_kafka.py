"""The streaming service against the real broker: hybrid end to end, tokens after a
retraction, policy swap mid-stream, junk on every topic, two instances in one group."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import orjson
from aiokafka.admin import AIOKafkaAdminClient

from rune.authorizer import Authorizer
from tests.integration.service_helpers import (
    DEADLINE_S,
    TopicFactory,
    client,
    make_topics,
    service,
    settings_for,
)
from tests.integration.test_kafka_log import topic_config

EXAMPLE = resources.files("rune") / "examples" / "drive"
U = {"type": "User", "id": "u"}
A = {"type": "Action", "id": "read"}
D = {"type": "Doc", "id": "d"}
OK = {"op": "assert", "fact": ["ok", U, A, D]}
BUNDLE = {"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""}


def req(rid: str, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "principal": U, "action": A, "resource": D, "context": {}, **extra}


def lines(name: str) -> list[Any]:
    return [orjson.loads(x) for x in (EXAMPLE / name).read_bytes().splitlines() if x.strip()]


async def test_hybrid_bundle_end_to_end(kafka_bootstrap: str, kafka_topics: TopicFactory) -> None:
    topics = await make_topics(kafka_topics)
    bundle = orjson.loads((EXAMPLE / "bundle.json").read_bytes())
    events, requests = lines("events.jsonl"), lines("requests.jsonl")
    expected = Authorizer()
    expected.load_bundle(bundle)
    expected.apply_batch(events)
    async with client(kafka_bootstrap, topics) as c:
        await c.bundle(bundle)
        for e in events:
            await c.event(e)
        async with service(settings_for(kafka_bootstrap, topics)):
            for r in requests:
                await c.send(topics.requests, orjson.dumps(r))
            got = await c.decisions({r["id"] for r in requests if isinstance(r.get("id"), str)})
    for r in requests:
        want = expected.check(r)
        assert got[r["id"]]["decision"] == want["decision"], r
        assert got[r["id"]]["policy_version"] == 1
        assert sum(got[r["id"]]["watermark"][topics.facts].values()) >= 0


async def test_missing_topics_are_created_compacted(
    kafka_bootstrap: str, kafka_admin: AIOKafkaAdminClient
) -> None:
    import uuid

    from rune.config import Topics

    suffix = uuid.uuid4().hex[:10]
    topics = Topics(**{role: f"rune-test.create.{role}.{suffix}" for role in Topics.model_fields})
    try:
        async with service(settings_for(kafka_bootstrap, topics, partitions=2)):
            pass
        for role in ("facts", "policies", "changes"):
            name = getattr(topics, role)
            assert await topic_config(kafka_admin, name, "cleanup.policy") == "compact"
        assert await topic_config(kafka_admin, topics.requests, "cleanup.policy") == "delete"
    finally:
        await kafka_admin.delete_topics(list(topics.model_dump().values()))


async def test_token_after_retraction(kafka_bootstrap: str, kafka_topics: TopicFactory) -> None:
    topics = await make_topics(kafka_topics)
    async with client(kafka_bootstrap, topics) as c, service(settings_for(kafka_bootstrap, topics)):
        await c.bundle(BUNDLE)
        token = await c.event(OK)
        await c.request(req("before", consistency={"at_least": token}))
        await c.decisions({"before"})  # decided before the retraction is produced
        token = await c.tombstone(OK)
        await c.request(req("after", consistency={"at_least": token}))
        got = await c.decisions({"before", "after"})
    assert got["before"]["decision"] == "allow"
    assert got["after"]["decision"] == "deny" and "error" not in got["after"]
    [(p, off)] = token[topics.facts].items()
    assert got["after"]["watermark"][topics.facts][p] >= off


async def test_policy_swap_mid_stream(kafka_bootstrap: str, kafka_topics: TopicFactory) -> None:
    topics = await make_topics(kafka_topics)
    async with (
        client(kafka_bootstrap, topics) as c,
        service(settings_for(kafka_bootstrap, topics)) as svc,
    ):
        await c.bundle(BUNDLE)
        token = await c.event(OK)
        for i in range(50):
            await c.request(req(f"a{i}", consistency={"at_least": token}))
        await c.bundle({"version": 2, "datalog": "p(X) :- .", "cedar": ""})  # invalid
        await c.bundle({"version": 3, "datalog": "deny(P, A, R) :- ok(P, A, R).", "cedar": ""})
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while svc.ctx.authorizer.policy_version != 3:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        for i in range(50):
            await c.request(req(f"b{i}"))
        got = await c.decisions({f"a{i}" for i in range(50)} | {f"b{i}" for i in range(50)})
        dead = await c.read_all(topics.dlq, lambda rs: len(rs) >= 1)
    assert {got[f"a{i}"]["policy_version"] for i in range(50)} <= {1, 3}
    for d in got.values():  # each decision is consistent with the version it names
        assert d["decision"] == ("allow" if d["policy_version"] == 1 else "deny")
    assert all(got[f"b{i}"]["policy_version"] == 3 for i in range(50))
    letter = orjson.loads(dead[0].value)
    assert letter["topic"] == topics.policies and "1:9" in letter["error"]


async def test_junk_on_every_topic(kafka_bootstrap: str, kafka_topics: TopicFactory) -> None:
    topics = await make_topics(kafka_topics, partitions=1)
    async with client(kafka_bootstrap, topics) as c, service(settings_for(kafka_bootstrap, topics)):
        await c.bundle(BUNDLE)
        await c.send(topics.policies, b"\x00junk", b"default")
        await c.send(topics.facts, b"{nope", b"junk")
        await c.send(topics.facts, None, b"not-a-key")
        await c.send(topics.facts, orjson.dumps({"op": "explode"}), b"junk2")
        token = await c.event(OK)
        await c.send(topics.requests, b"\xff")
        await c.send(topics.requests, orjson.dumps({"id": "half"}))
        await c.request(req("good", consistency={"at_least": token}))
        got = await c.decisions({"good", "half"})
        dead = await c.read_all(topics.dlq, lambda rs: len(rs) >= 5)
    assert got["good"]["decision"] == "allow"
    assert got["half"]["decision"] == "deny" and got["half"]["error"]
    letters = [orjson.loads(r.value) for r in dead]
    assert sorted(x["topic"] for x in letters) == sorted(
        [topics.policies, topics.facts, topics.facts, topics.facts, topics.requests]
    )
    import base64

    assert (
        base64.b64decode(next(x for x in letters if x["topic"] == topics.requests)["value_b64"])
        == b"\xff"
    )


async def test_two_instances_share_requests_with_full_views(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topics = await make_topics(kafka_topics, partitions=4)
    settings = settings_for(kafka_bootstrap, topics)
    facts = [
        {"op": "assert", "fact": ["ok", U, A, {"type": "Doc", "id": f"d{i}"}]} for i in range(40)
    ]
    async with client(kafka_bootstrap, topics) as c:
        await c.bundle(BUNDLE)
        for f in facts:
            await c.event(f)
        async with service(settings) as s1, service(settings) as s2:
            deadline = asyncio.get_running_loop().time() + DEADLINE_S
            ids: set[str] = set()
            n = 0
            while not (s1.ctx.stats.decisions and s2.ctx.stats.decisions):
                assert asyncio.get_running_loop().time() < deadline, "one instance got nothing"
                batch = [
                    {**req(f"r{n + i}"), "resource": {"type": "Doc", "id": f"d{(n + i) % 40}"}}
                    for i in range(40)
                ]
                for r in batch:
                    await c.request(r)
                ids |= {r["id"] for r in batch}
                n += 40
                await asyncio.sleep(0.2)  # pacing the load, not synchronisation
            got = await c.decisions(ids)
            for s in (s1, s2):
                assert len(list(s.ctx.authorizer.engine.lookup("ok", (None, None, None)))) == 40
    assert all(got[i]["decision"] == "allow" for i in ids)
