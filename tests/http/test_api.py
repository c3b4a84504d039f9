"""The v1 HTTP API on a real server (loopback): authorize, events with consistency tokens,
bundles, lookups, and every kind of bad input."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from rune.connectors.base import Outgoing
from rune.policies.requests import MAX_CONTEXT_DEPTH
from tests.http.harness import BUNDLE, ok_fact, request, serving, uid


async def test_authorize_one_and_many() -> None:
    async with serving(events=[ok_fact("alice", "write", "d1")]) as h:
        status, d, _ = await h.call("POST", "/v1/authorize", request("alice", "write", "d1"))
        assert status == 200 and d["decision"] == "allow" and d["policy_version"] == 1
        assert d["id"].startswith("http-") and d["reasons"] == ["datalog:allow"]
        batch = [
            request("alice", "write", "d1", id="a"),
            request("bob", "write", "d1", id="b"),
            request("bob", "read", "d1", id="c"),
        ]
        status, ds, _ = await h.call("POST", "/v1/authorize", batch)
        assert status == 200
        assert [(d["id"], d["decision"]) for d in ds] == [
            ("a", "allow"),
            ("b", "deny"),
            ("c", "deny"),
        ]
        # every decision made over HTTP is also in the decision log
        logged = [orjson.loads(r.value) for r in h.log.records("rune.decisions")]
        assert {d["id"] for d in logged} >= {"a", "b", "c"}


async def test_events_then_authorize_with_the_returned_token() -> None:
    async with serving() as h:
        before = await h.call("POST", "/v1/authorize", request("zoe", "read", "d9", id="x"))
        assert before[1]["decision"] == "deny"
        status, body, _ = await h.call(
            "POST", "/v1/events?wait=false", [ok_fact("zoe", "read", "d9")]
        )
        assert status == 202 and body["accepted"] == 1 and "applied" not in body
        token = body["consistency"]
        ((part, offset),) = body["consistency"]["at_least"]["rune.facts"].items()
        assert int(part) in (0, 1) and offset >= 0
        status, d, _ = await h.call(
            "POST", "/v1/authorize", request("zoe", "read", "d9", id="y", consistency=token)
        )
        assert status == 200 and d["decision"] == "allow"
        assert d["watermark"]["rune.facts"][part] >= offset
        # retraction, embedded default waits until applied
        status, body, _ = await h.call(
            "POST", "/v1/events", ok_fact("zoe", "read", "d9", "retract")
        )
        assert status == 200 and body["applied"] is True
        d = (await h.call("POST", "/v1/authorize", request("zoe", "read", "d9")))[1]
        assert d["decision"] == "deny"


async def test_unreachable_token_denies_as_stale_after_the_bounded_wait() -> None:
    async with serving(stream={"token_wait_s": 0.2}) as h:
        token = {"at_least": {"rune.facts": {"0": 10_000}}}
        status, d, _ = await h.call(
            "POST", "/v1/authorize", request("a", "read", "d", consistency=token)
        )
        assert status == 200 and d["decision"] == "deny" and "stale view" in d["error"]


async def test_bundles_validate_swap_and_refuse_stale_versions() -> None:
    async with serving(events=[ok_fact("alice", "read", "d1")]) as h:
        bad = {"version": 2, "datalog": "allow(P, A, R) :- ok(P, A, R", "cedar": ""}
        status, err, _ = await h.call("POST", "/v1/bundles", bad)
        assert status == 400 and err["error"]["location"] == "datalog 1:29"  # end of input
        bad_cedar = {"version": 2, "datalog": "", "cedar": "permit(principal, action, resource"}
        status, err, _ = await h.call("POST", "/v1/bundles", bad_cedar)
        assert status == 400 and err["error"]["type"] == "invalid_bundle"
        status, err, _ = await h.call("POST", "/v1/bundles", {**BUNDLE, "version": 1})
        assert status == 409 and err["error"]["location"] == "version"
        denying = {**BUNDLE, "version": 5, "datalog": "allow(P, A, R) :- ok(P, A, R), A != A."}
        status, body, _ = await h.call("POST", "/v1/bundles", denying)
        assert status == 200 and body["version"] == 5 and body["active"] is True
        d = (await h.call("POST", "/v1/authorize", request("alice", "read", "d1")))[1]
        assert d["decision"] == "deny" and d["policy_version"] == 5
        # a bundle the static check passes but the live facts refuse (arity clash) is a 400
        clash = {"version": 6, "datalog": "allow(P, A, R) :- ok(P, A, R, R).", "cedar": ""}
        status, err, _ = await h.call("POST", "/v1/bundles", clash)
        assert status == 400 and "ok" in err["error"]["message"]
        assert h.server.service.ctx.authorizer.policy_version == 5


async def test_lookups_page_through_every_resource() -> None:
    docs = [f"d{i}" for i in range(7)]
    async with serving(events=[ok_fact("alice", "read", d) for d in docs]) as h:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            q = "principal_type=User&principal_id=alice&action_type=Action&action_id=read"
            q += "&resource_type=Doc&limit=3" + (f"&cursor={cursor}" if cursor else "")
            status, page, _ = await h.call("GET", f"/v1/lookup/resources?{q}")
            assert status == 200
            seen += [item["id"] for item in page["items"]]
            pages += 1
            cursor = page["cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(docs) and pages == 3
        q = "resource_type=Doc&resource_id=d3&action_type=Action&action_id=read&principal_type=User"
        status, page, _ = await h.call("GET", f"/v1/lookup/subjects?{q}")
        assert status == 200 and page["items"] == [uid("User", "alice")]
        status, err, _ = await h.call("GET", "/v1/lookup/subjects?resource_type=Doc")
        assert status == 422 and err["error"]["location"] == "resource_id"


@pytest.mark.parametrize(
    ("body", "status", "location"),
    [
        (b"{not json", 400, None),
        (b"", 400, None),
        (orjson.dumps(request("a", "read", "d", colour="red")), 422, "colour"),
        (
            orjson.dumps({**request("a", "read", "d"), "principal": {"type": "User"}}),
            422,
            "principal.id",
        ),
        (orjson.dumps(request("a", "read", "d", id="x" * 257)), 422, "id"),
        (orjson.dumps([request("a", "read", "d"), 7]), 422, "[1]"),
        (orjson.dumps([]), 422, None),
        (
            orjson.dumps(request("a", "read", "d", consistency={"at_least": {"nope": {}}})),
            422,
            "consistency",
        ),
    ],
)
async def test_bad_requests_get_a_typed_json_error(
    body: bytes, status: int, location: str | None
) -> None:
    async with serving() as h:
        got, err, resp = await h.call("POST", "/v1/authorize", raw=body)
        assert got == status and resp.content_type == "application/json"
        assert err["error"]["type"] and err["error"]["message"]
        if location is not None:
            assert err["error"]["location"] == location


async def test_size_depth_and_batch_limits() -> None:
    async with serving(server={"max_body_bytes": 2048, "max_batch": 3}) as h:
        big = request("a", "read", "d", context={"blob": "x" * 4096})
        status, err, _ = await h.call("POST", "/v1/authorize", big)
        assert status == 413 and err["error"]["type"] == "body_too_large"
        status, err, _ = await h.call("POST", "/v1/authorize", [request("a", "r", "d")] * 4)
        assert status == 413 and err["error"]["type"] == "batch_too_large"
        deep: dict[str, object] = {}
        node = deep
        for _ in range(MAX_CONTEXT_DEPTH + 2):
            node["k"] = {}
            node = node["k"]  # type: ignore[assignment]
        status, err, _ = await h.call("POST", "/v1/authorize", request("a", "r", "d", context=deep))
        assert status == 422 and err["error"]["location"].startswith("context")
        # the service is unharmed
        assert (await h.call("POST", "/v1/authorize", request("a", "r", "d")))[0] == 200


async def test_bad_events_are_refused_with_their_location_and_nothing_is_applied() -> None:
    async with serving() as h:
        batch = [ok_fact("u1", "read", "d"), {"op": "assert", "fact": ["ok", uid("User", "x")]}]
        status, err, _ = await h.call("POST", "/v1/events", batch)
        assert status == 422 and err["error"]["location"] == "[1].fact"
        status, err, _ = await h.call("POST", "/v1/events", {"op": "explode"})
        assert status == 422 and err["error"]["type"] == "invalid_event"
        assert h.log.records("rune.facts") == []
        d = (await h.call("POST", "/v1/authorize", request("u1", "read", "d")))[1]
        assert d["decision"] == "deny"


async def test_unknown_route_and_method_are_json_errors() -> None:
    async with serving() as h:
        status, err, _ = await h.call("GET", "/v2/nothing")
        assert status == 404 and err["error"]["type"] == "not_found"
        status, err, _ = await h.call("GET", "/v1/authorize")
        assert status == 405 and err["error"]["type"] == "method_not_allowed"


async def test_lookup_errors_name_the_query_parameter() -> None:
    async with serving() as h:
        base = "action_type=Action&action_id=read"
        status, err, _ = await h.call(
            "GET",
            f"/v1/lookup/resources?principal_type=Us%20er&principal_id=a&{base}&resource_type=Doc",
        )
        assert status == 422 and err["error"]["location"] == "principal_type"
        status, err, _ = await h.call(
            "GET",
            f"/v1/lookup/resources?principal_type=User&principal_id=a&{base}&resource_type=Doc!",
        )
        assert status == 422 and err["error"]["location"] == "resource_type"
        status, err, _ = await h.call(
            "GET",
            f"/v1/lookup/subjects?resource_type=Doc&resource_id=d&{base}&principal_type=9x",
        )
        assert status == 422 and err["error"]["location"] == "principal_type"


async def test_method_not_allowed_names_the_allowed_methods() -> None:
    async with serving() as h:
        status, err, resp = await h.call("DELETE", "/v1/events")
        assert status == 405 and resp.headers["Allow"] == "POST"
        assert "POST" in err["error"]["message"]


async def test_boolean_bundle_version_is_invalid_not_stale() -> None:
    async with serving() as h:
        status, err, _ = await h.call("POST", "/v1/bundles", {**BUNDLE, "version": True})
        assert status == 400 and err["error"]["location"] == "version"


async def test_an_unavailable_log_is_a_503_and_the_service_keeps_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rune.connectors.base import ConnectorError

    async with serving() as h:

        async def refuse(records: object) -> object:
            raise ConnectorError("produce failed: broker unreachable")

        monkeypatch.setattr(h.log, "produce", refuse)
        status, err, resp = await h.call("POST", "/v1/events?wait=false", ok_fact("a", "r", "d"))
        assert status == 503 and err["error"]["type"] == "log_unavailable"
        assert resp.headers["Retry-After"] == "1"
        monkeypatch.undo()
        assert (await h.call("GET", "/health/live"))[0] == 200
        status, body, _ = await h.call("POST", "/v1/events", ok_fact("a", "r", "d"))
        assert status == 200 and body["applied"] is True


async def test_writes_fail_fast_while_the_log_is_known_to_be_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serving() as h:
        decisions = h.server.service.ctx.settings.topics.decisions
        before = len(h.log.records(decisions))
        monkeypatch.setattr(h.log, "available", lambda: False)
        for path, body in [
            ("/v1/authorize", request("a", "r", "d")),
            ("/v1/events?wait=false", ok_fact("a", "r", "d")),
            ("/v1/bundles?wait=false", {**BUNDLE, "version": 2}),
        ]:
            status, err, resp = await h.call("POST", path, body)
            assert status == 503 and err["error"]["type"] == "log_unavailable", (path, err)
            assert resp.headers["Retry-After"] == "1"
        assert len(h.log.records(decisions)) == before  # nothing was written


async def test_a_write_the_log_is_slow_to_acknowledge_is_a_503_then_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serving(server={"log_wait_s": 0.05}) as h:
        release = asyncio.Event()
        send = h.log.send

        async def slow(records: list[Outgoing]) -> object:
            await release.wait()
            return await send(records)

        monkeypatch.setattr(h.log, "send", slow)
        decisions = h.server.service.ctx.settings.topics.decisions
        before = len(h.log.records(decisions))
        status, err, _ = await h.call("POST", "/v1/authorize", request("a", "r", "d", id="late"))
        assert status == 503 and err["error"]["type"] == "log_unavailable"
        assert "completes once it is back" in err["error"]["message"]
        release.set()  # the log is back: the decision is recorded after all
        background = set(h.server.runtime.background)
        assert background, "the write goes on after the response"
        await asyncio.wait(background)
        recorded = [orjson.loads(r.value or b"{}") for r in h.log.records(decisions)[before:]]
        assert [d["id"] for d in recorded] == ["late"]


@pytest.mark.parametrize("content_type", ["application/x-ndjson", "application/jsonl"])
async def test_events_as_json_lines(content_type: str) -> None:
    async with serving() as h:
        lines = [ok_fact("ann", "read", "d1"), ok_fact("ann", "read", "d2")]
        body = b"\n".join(orjson.dumps(e) for e in lines) + b"\n\n"
        headers = {"Content-Type": content_type}
        status, answer, _ = await h.call("POST", "/v1/events", raw=body, headers=headers)
        assert status == 200 and answer["accepted"] == 2 and answer["applied"] is True
        for doc in ("d1", "d2"):
            d = (await h.call("POST", "/v1/authorize", request("ann", "read", doc)))[1]
            assert d["decision"] == "allow"
        bad = orjson.dumps(lines[0]) + b"\n{nope\n"
        status, err, _ = await h.call("POST", "/v1/events", raw=bad, headers=headers)
        assert status == 400 and err["error"]["message"].startswith("line 2: invalid JSON")
