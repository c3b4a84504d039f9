"""``rune serve`` on the real broker: HTTP events are produced to the fact topic, their
token makes a following authorize read its writes, HTTP decisions reach the decision topic,
and HTTP bundles go through the policy topic."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from rune.config import load_settings
from rune.connectors.kafka import KafkaLog
from rune.http.host import HttpHost
from tests.integration.service_helpers import DEADLINE_S, TopicFactory, client, make_topics

BUNDLE = {"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""}


def uid(t: str, i: str) -> dict[str, str]:
    return {"type": t, "id": i}


def fact(p: str, op: str = "assert") -> dict[str, Any]:
    return {"op": op, "fact": ["ok", uid("User", p), uid("Action", "read"), uid("Doc", "d")]}


async def test_read_your_writes_over_http_on_kafka(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topics = await make_topics(kafka_topics)
    settings = load_settings(
        None,
        {
            "server": {"port": 0},
            "kafka": {"bootstrap": kafka_bootstrap, "group_id": f"http-{topics.requests}"},
            "topics": topics.model_dump(),
            "logging": {"decisions": "none"},
        },
    )
    server = HttpHost(settings, KafkaLog(kafka_bootstrap), notice=lambda m: None)
    task = asyncio.create_task(server.run())
    ready = asyncio.create_task(server.service.ctx.ready.wait())
    await asyncio.wait([task, ready], timeout=DEADLINE_S, return_when="FIRST_COMPLETED")
    assert ready.done(), "service not ready"
    url = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def call(path: str, body: Any) -> tuple[int, Any]:
                async with http.post(url + path, data=orjson.dumps(body)) as resp:
                    return resp.status, orjson.loads(await resp.read())

            status, body = await call("/v1/bundles?wait=true", BUNDLE)
            assert (status, body["active"]) == (200, True)
            for n in range(5):  # each write is visible to the next read through its token
                status, body = await call("/v1/events", [fact(f"u{n}")])
                assert status == 202 and "applied" not in body  # Kafka mode does not wait
                token = body["consistency"]
                assert set(token["at_least"]) == {topics.facts}
                req = {
                    "id": f"rw-{n}",
                    "principal": uid("User", f"u{n}"),
                    "action": uid("Action", "read"),
                    "resource": uid("Doc", "d"),
                    "consistency": token,
                }
                status, d = await call("/v1/authorize", req)
                assert (status, d["decision"]) == (200, "allow"), d
            status, body = await call("/v1/events", fact("u0", "retract"))
            status, d = await call(
                "/v1/authorize",
                {
                    "id": "rw-retracted",
                    "principal": uid("User", "u0"),
                    "action": uid("Action", "read"),
                    "resource": uid("Doc", "d"),
                    "consistency": body["consistency"],
                },
            )
            assert d["decision"] == "deny"
        async with client(kafka_bootstrap, topics) as c:
            got = await c.decisions({f"rw-{n}" for n in range(5)} | {"rw-retracted"})
            assert got["rw-4"]["decision"] == "allow" and got["rw-retracted"]["decision"] == "deny"
            facts = await c.read_all(topics.facts, lambda rs: len(rs) >= 6)
            assert orjson.loads(facts[0].value)["op"] in {"assert", "retract"}
    finally:
        server.stop()
        await asyncio.wait_for(task, DEADLINE_S)
