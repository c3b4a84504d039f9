"""Zanzibar models on the real broker: relationship events on the fact topic (HTTP and
produced directly, tombstones included), /v1/check and lookups with consistency tokens, and
Zanzibar checks through the request topic."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from rune.config import load_settings
from rune.connectors.kafka import KafkaLog
from rune.http.host import HttpHost
from rune.models import compile_spicedb
from tests.integration.service_helpers import (
    DEADLINE_S,
    TopicFactory,
    client,
    make_topics,
    service,
    settings_for,
)

SCHEMA = """
definition user {}
definition group {
  relation member: user | group#member
}
definition folder {
  relation parent: folder
  relation viewer: user | group#member
  permission view = viewer + parent->view
}
definition document {
  relation parent: folder
  relation owner: user
  permission view = owner + parent->view
}
"""
BUNDLE = compile_spicedb(SCHEMA).bundle(1)


async def test_check_and_lookups_over_http_on_kafka(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topics = await make_topics(kafka_topics)
    settings = load_settings(
        None,
        {
            "server": {"port": 0},
            "kafka": {"bootstrap": kafka_bootstrap, "group_id": f"zz-{topics.requests}"},
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

            async def post(path: str, body: Any) -> tuple[int, Any]:
                async with http.post(url + path, data=orjson.dumps(body)) as resp:
                    return resp.status, orjson.loads(await resp.read())

            async def get(path: str, **params: str) -> tuple[int, Any]:
                async with http.get(url + path, params=params) as resp:
                    return resp.status, orjson.loads(await resp.read())

            status, body = await post("/v1/bundles?wait=true", BUNDLE)
            assert (status, body["active"]) == (200, True)
            status, body = await post(
                "/v1/events",
                [
                    {"op": "assert", "relationship": "group:eng#member@user:anne"},
                    {"op": "assert", "relationship": "folder:root#viewer@group:eng#member"},
                    {
                        "op": "assert",
                        "user": "folder:root",
                        "relation": "parent",
                        "object": "folder:sub",
                    },
                    *(
                        {"op": "assert", "relationship": f"document:d{n}#parent@folder:sub"}
                        for n in range(5)
                    ),
                ],
            )
            assert status == 202
            token = body["consistency"]
            status, d = await post(
                "/v1/check",
                {
                    "id": "zz-1",
                    "resource": "document:d3",
                    "permission": "view",
                    "subject": "user:anne",
                    "consistency": token,
                },
            )
            assert (status, d["decision"], d["reasons"]) == (
                200,
                "allow",
                ["zanzibar:document#view"],
            ), d
            for partition, offset in token["at_least"][topics.facts].items():
                assert d["watermark"][topics.facts][partition] >= offset
            pages: list[str] = []
            cursor = None
            while True:
                params = {
                    "resource_type": "document",
                    "permission": "view",
                    "subject": "user:anne",
                    "limit": "2",
                    "consistency": orjson.dumps(token).decode(),
                }
                if cursor:
                    params["cursor"] = cursor
                status, page = await get("/v1/zanzibar/lookup/resources", **params)
                assert status == 200, page
                pages += page["items"]
                cursor = page["cursor"]
                if cursor is None:
                    break
            assert pages == [f"document:d{n}" for n in range(5)]
            status, page = await get(
                "/v1/zanzibar/lookup/subjects",
                resource="folder:sub",
                permission="view",
                subject_type="user",
            )
            assert (status, page["items"]) == (200, ["user:anne"])
            status, body = await post(
                "/v1/events",
                {"op": "retract", "user": "user:anne", "relation": "member", "object": "group:eng"},
            )
            status, d = await post(
                "/v1/check",
                {
                    "id": "zz-2",
                    "resource": "document:d3",
                    "permission": "view",
                    "subject": "user:anne",
                    "consistency": body["consistency"],
                },
            )
            assert d["decision"] == "deny"
            status, err = await post(
                "/v1/check", {"resource": "document:d3", "permission": "view", "subject": 7}
            )
            assert (status, err["error"]["location"]) == (422, "subject"), err
        async with client(kafka_bootstrap, topics) as c:
            got = await c.decisions({"zz-1", "zz-2"})
            assert got["zz-1"]["decision"] == "allow" and got["zz-2"]["decision"] == "deny"
    finally:
        server.stop()
        await asyncio.wait_for(task, DEADLINE_S)


async def test_checks_through_the_request_topic(
    kafka_bootstrap: str, kafka_topics: TopicFactory
) -> None:
    topics = await make_topics(kafka_topics)
    async with client(kafka_bootstrap, topics) as c, service(settings_for(kafka_bootstrap, topics)):
        await c.bundle(BUNDLE)
        await c.event({"op": "assert", "relationship": "document:1#owner@user:olga"})
        token = await c.event({"op": "assert", "relationship": "document:2#owner@user:olga"})
        policies = await c.read_all(topics.policies, lambda rs: len(rs) >= 1)
        token[topics.policies] = {str(policies[0].partition): policies[0].offset}
        await c.request(
            {
                "id": "q-1",
                "resource": "document:2",
                "permission": "view",
                "subject": "user:olga",
                "consistency": {"at_least": token},
            }
        )
        first = await c.decisions(
            {"q-1"}
        )  # tokens are "at least": decide q-1 before the retraction
        assert first["q-1"]["decision"] == "allow", first["q-1"]
        gone = await c.tombstone({"op": "retract", "relationship": "document:2#owner@user:olga"})
        await c.request(
            {
                "id": "q-2",
                "resource": "document:2",
                "permission": "view",
                "subject": "user:olga",
                "consistency": {"at_least": gone},
            }
        )
        await c.request(
            {
                "id": "q-3",
                "resource": "document:1",
                "permission": "view",
                "subject": "user:olga",
                "consistency": {"at_least": gone},
                "explain": True,
            }
        )
        got = await c.decisions({"q-1", "q-2", "q-3"})
        assert got["q-2"]["decision"] == "deny", got["q-2"]
        assert got["q-3"]["decision"] == "allow"
        assert (
            "document:1#owner@user:olga  (relationship)" in (got["q-3"]["explanation"]["zanzibar"])
        )
