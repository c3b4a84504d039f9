"""The API documents (``rune/http/spec``) checked against the code, so that they cannot drift.

- OpenAPI: a valid 3.1 document whose paths are exactly the routes of the aiohttp app; real
  answers of a real server (loopback) validate against the schema documented for their route
  and status, documented headers are present; request bodies the server accepts are exactly
  those the request schemas accept (on a table of edge cases).
- AsyncAPI: channel addresses and topic layout are those of the settings; the schemas both
  documents define are identical; every record the service reads or writes (the bundled
  example, decisions of ``rune run``, HTTP writes, dead letters, the changefeed) validates
  against its message (payload and key), under JSON Schema draft-07 and 2020-12 alike.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema
import orjson
import pytest
import yaml
from click.testing import CliRunner
from jsonschema.protocols import Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT7, DRAFT202012

from rune.cli import main
from rune.config import Settings, load_settings
from rune.connectors.base import Outgoing
from rune.connectors.embedded import EmbeddedLog
from rune.http.host import HttpHost
from rune.http.limits import MAX_REQUEST_LINE
from rune.streams.app import topic_specs
from rune.streams.keys import event_key
from tests.http.harness import ADMIN, BUNDLE, Http, ok_fact, request, serving, uid

SPEC = resources.files("rune.http") / "spec"
EXAMPLE = resources.files("rune") / "examples" / "drive"
OPENAPI: dict[str, Any] = yaml.safe_load((SPEC / "openapi.yaml").read_text(encoding="utf-8"))
ASYNCAPI: dict[str, Any] = yaml.safe_load((SPEC / "asyncapi.yaml").read_text(encoding="utf-8"))
AUTH = {"Authorization": f"Bearer {ADMIN}"}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


# -- JSON pointers and schemas -------------------------------------------------------------


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _at(doc: Any, pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node = doc
    for raw in pointer[2:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _follow(doc: Any, pointer: str) -> str:
    """``pointer``, or where the ``$ref`` chain starting there ends."""
    node = _at(doc, pointer)
    while isinstance(node, dict) and set(node) == {"$ref"}:
        pointer = node["$ref"]
        node = _at(doc, pointer)
    return pointer


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


OPENAPI_URI = "urn:rune:openapi"
ASYNCAPI_URI = "urn:rune:asyncapi"
REGISTRY: Registry[Any] = (
    Registry()
    .with_resource(OPENAPI_URI, DRAFT202012.create_resource(OPENAPI))
    .with_resource(f"{ASYNCAPI_URI}:2020-12", DRAFT202012.create_resource(ASYNCAPI))
    .with_resource(f"{ASYNCAPI_URI}:draft-07", DRAFT7.create_resource(ASYNCAPI))
)


def openapi_schema(pointer: str) -> jsonschema.Draft202012Validator:
    """A validator of the schema at ``pointer`` of the OpenAPI document (3.1: 2020-12)."""
    return jsonschema.Draft202012Validator(
        {"$ref": OPENAPI_URI + _follow(OPENAPI, pointer)}, registry=REGISTRY
    )


def asyncapi_schemas(pointer: str) -> list[Validator]:
    """Validators of the schema at ``pointer`` of the AsyncAPI document: its default schema
    format is a draft-07 superset; the shared schemas must mean the same under 2020-12."""
    target = _follow(ASYNCAPI, pointer)
    return [
        jsonschema.Draft7Validator({"$ref": f"{ASYNCAPI_URI}:draft-07{target}"}, registry=REGISTRY),
        jsonschema.Draft202012Validator(
            {"$ref": f"{ASYNCAPI_URI}:2020-12{target}"}, registry=REGISTRY
        ),
    ]


def valid_openapi(pointer: str, value: Any) -> bool:
    return openapi_schema(pointer).is_valid(value)


def check_asyncapi(pointer: str, value: Any) -> None:
    for validator in asyncapi_schemas(pointer):
        validator.validate(value)


def valid_asyncapi(pointer: str, value: Any) -> bool:
    verdicts = {v.is_valid(value) for v in asyncapi_schemas(pointer)}
    assert len(verdicts) == 1, f"draft-07 and 2020-12 disagree on {value!r} at {pointer}"
    return verdicts.pop()


def component(name: str) -> str:
    return f"#/components/schemas/{name}"


# -- (a), (b): the OpenAPI document and the routes ------------------------------------------


def test_openapi_document_is_valid_and_its_refs_resolve() -> None:
    validate_openapi(OPENAPI)
    assert OPENAPI["openapi"].startswith("3.1")
    for doc in (OPENAPI, ASYNCAPI):
        for ref in _refs(doc):
            _at(doc, ref)  # KeyError: a dangling reference
    for ptr, example in _openapi_examples():
        assert valid_openapi(ptr, example), ptr


def _openapi_examples() -> Iterator[tuple[str, Any]]:
    for path, item in OPENAPI["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            for media, body in content.items():
                for example in body.get("examples", {}).values():
                    base = f"#/paths/{_escape(path)}/{method}/requestBody/content"
                    yield f"{base}/{_escape(media)}/schema", example["value"]


def app_routes() -> set[tuple[str, str]]:
    server = HttpHost(load_settings(None, {}), EmbeddedLog())
    out = set()
    for route in server.app.router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside every GET
        resource = route.resource
        assert resource is not None
        out.add((route.method, resource.canonical))
    return out


def test_openapi_paths_are_exactly_the_routes_of_the_app() -> None:
    documented = {
        (method.upper(), path)
        for path, item in OPENAPI["paths"].items()
        for method in item
        if method in METHODS
    }
    routes = app_routes()
    assert routes - documented == set(), "routes missing from openapi.yaml"
    assert documented - routes == set(), "openapi.yaml documents routes the app lacks"
    assert ("POST", "/v1/authorize") in routes and len(routes) >= 14


def test_admin_routes_and_only_they_need_the_bearer_token() -> None:
    assert OPENAPI["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, item in OPENAPI["paths"].items():
        for method, op in item.items():
            secured = op.get("security", OPENAPI.get("security", []))
            if path.startswith("/admin/"):
                assert secured == [{"bearerAuth": []}], (method, path)
                assert {"401", "403"} <= set(op["responses"]), (method, path)
            else:
                assert not secured, (method, path)


# -- (c): real answers against the documented responses --------------------------------------


def _media(content_type: str) -> str:
    return content_type.split(";")[0].strip()


async def call(
    h: Http,
    method: str,
    path: str,
    status: int,
    body: Any = None,
    *,
    query: str = "",
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    documented: str | None = None,
) -> Any:
    """Call the server, check the status, and check the answer against the response the
    OpenAPI document gives for (path, method, status), or at ``documented`` (a pointer)."""
    url = path + (f"?{query}" if query else "")
    got, parsed, resp = await h.call(method, url, body, raw=raw, headers=headers)
    assert got == status, (method, url, got, parsed)
    if _media(resp.headers["Content-Type"]) == "application/yaml":
        parsed = yaml.safe_load(parsed)  # the schema describes the document, not its text
    if documented is None:
        responses = OPENAPI["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path} answers {status}, undocumented"
        documented = f"#/paths/{_escape(path)}/{method.lower()}/responses/{status}"
    pointer = _follow(OPENAPI, documented)
    doc = _at(OPENAPI, pointer)
    media = _media(resp.headers["Content-Type"])
    assert media in doc["content"], (method, url, media)
    schema = openapi_schema(f"{pointer}/content/{_escape(media)}/schema")
    schema.validate(parsed)
    for name, header in doc.get("headers", {}).items():
        header = _at(OPENAPI, header["$ref"]) if "$ref" in header else header
        assert name in resp.headers, (method, url, name)
        value: Any = resp.headers[name]
        if header["schema"].get("type") == "integer":
            value = int(value)
        jsonschema.Draft202012Validator(header["schema"]).validate(value)
    return parsed


async def test_answers_of_the_v1_routes_match_their_documented_schemas() -> None:
    docs = [f"d{i}" for i in range(5)]
    async with serving(events=[ok_fact("alice", "read", d) for d in docs]) as h:
        d = await call(h, "POST", "/v1/authorize", 200, request("alice", "read", "d1"))
        assert d["decision"] == "allow" and d["id"].startswith("http-")
        batch = [
            request("alice", "read", "d2", id="a", explain=True),
            request("bob", "read", "d2", id="b", context={"ip": "10.0.0.1", "n": 3}),
            {**request("x", "read", "d", id="c"), "principal": {"__entity": uid("User", "x")}},
        ]
        ds = await call(h, "POST", "/v1/authorize", 200, batch)
        assert [x["decision"] for x in ds] == ["allow", "deny", "deny"] and "explanation" in ds[0]
        # writes: tokens, read-your-writes
        body = await call(
            h, "POST", "/v1/events", 202, [ok_fact("zoe", "read", "d9")], query="wait=false"
        )
        assert "applied" not in body
        later = request("zoe", "read", "d9", consistency=body["consistency"])
        assert (await call(h, "POST", "/v1/authorize", 200, later))["decision"] == "allow"
        upsert = {"op": "upsert", "entity": {"uid": uid("Doc", "d9"), "attrs": {"public": True}}}
        body = await call(h, "POST", "/v1/events", 200, upsert)
        assert body["applied"] is True
        # bundles
        v2 = {**BUNDLE, "version": 2}
        assert (await call(h, "POST", "/v1/bundles", 200, v2))["active"] is True
        body = await call(h, "POST", "/v1/bundles", 202, {**BUNDLE, "version": 3}, query="wait=0")
        assert "active" not in body and body["version"] == 3
        err = await call(h, "POST", "/v1/bundles", 409, {**BUNDLE, "version": 1})
        assert err["error"]["location"] == "version"
        bad = {"version": 9, "datalog": "p(X) :- .", "cedar": ""}
        err = await call(h, "POST", "/v1/bundles", 400, bad)
        assert err["error"]["location"] == "datalog 1:9"
        await call(h, "POST", "/v1/bundles", 400, raw=b"[1, 2")
        await call(h, "POST", "/v1/bundles", 400, [BUNDLE])
        await call(h, "POST", "/v1/bundles", 422, {**BUNDLE, "version": 9}, query="name=")
        # lookups, paged
        q = "principal_type=User&principal_id=alice&action_type=Action&action_id=read"
        page = await call(
            h, "GET", "/v1/lookup/resources", 200, query=f"{q}&resource_type=Doc&limit=2"
        )
        assert len(page["items"]) == 2 and page["cursor"]
        cursor = page["cursor"]
        page = await call(
            h,
            "GET",
            "/v1/lookup/resources",
            200,
            query=f"{q}&resource_type=Doc&limit=1000&cursor={cursor}",
        )
        assert page["cursor"] is None
        q = "resource_type=Doc&resource_id=d1&action_type=Action&action_id=read"
        page = await call(h, "GET", "/v1/lookup/subjects", 200, query=f"{q}&principal_type=User")
        assert page["items"] == [uid("User", "alice")]
        await call(h, "GET", "/v1/lookup/subjects", 422, query=q)
        q = "principal_type=User&principal_id=alice&action_type=Action&action_id=read"
        err = await call(
            h, "GET", "/v1/lookup/resources", 422, query=f"{q}&resource_type=Doc&limit=0"
        )
        assert err["error"]["location"] == "limit"
        # malformed and invalid input
        for path in ("/v1/authorize", "/v1/events"):
            await call(h, "POST", path, 400, raw=b"{not json")
            await call(h, "POST", path, 400, raw=b"")
            await call(h, "POST", path, 422, [])
        err = await call(h, "POST", "/v1/authorize", 422, [request("a", "r", "d"), 7])
        assert err["error"]["location"] == "[1]"
        err = await call(h, "POST", "/v1/events", 422, {"op": "explode"})
        assert err["error"]["type"] == "invalid_event"
        await call(h, "POST", "/v1/events", 422, ok_fact("a", "b", "c"), query="wait=maybe")
        # routes and methods that do not exist
        await call(h, "GET", "/v2/nothing", 404, documented="#/components/responses/NotFound")
        await call(
            h, "GET", "/v1/authorize", 405, documented="#/components/responses/MethodNotAllowed"
        )
        await call(
            h,
            "DELETE",
            "/health/live",
            405,
            documented="#/components/responses/MethodNotAllowed",
        )


async def test_answers_of_health_metrics_documents_and_admin_match() -> None:
    async with serving(events=[ok_fact("a", "read", "d")]) as h:
        assert (await call(h, "GET", "/health/live", 200))["status"] == "alive"
        assert (await call(h, "GET", "/health/ready", 200))["policy_version"] == 1
        text = await call(h, "GET", "/metrics", 200)
        assert "authorization_requests_total" in text
        for name, doc in (("openapi.yaml", OPENAPI), ("asyncapi.yaml", ASYNCAPI)):
            assert await call(h, "GET", f"/{name}", 200) == doc
            _, text, _ = await h.call("GET", f"/{name}")
            assert text == (SPEC / name).read_text(encoding="utf-8")
        await call(h, "POST", "/v1/authorize", 200, request("a", "read", "d"))
        for method, path in (
            ("POST", "/admin/cache/clear"),
            ("POST", "/admin/reload"),
            ("GET", "/admin/stats"),
            ("GET", "/admin/config"),
        ):
            await call(h, method, path, 401)
            await call(h, method, path, 403, headers={"Authorization": "Bearer wrong"})
            await call(h, method, path, 403, headers={"Authorization": f"Basic {ADMIN}"})
            await call(h, method, path, 200, headers=AUTH)
        # readiness while catching up and while draining (the states a real start and stop
        # go through; set by hand here)
        ctx = h.server.service.ctx
        ctx.ready.clear()
        try:
            body = await call(h, "GET", "/health/ready", 503)
            assert body["status"] == "catching_up"
            for method, path, payload in (
                ("POST", "/v1/authorize", request("a", "read", "d")),
                ("POST", "/v1/events", ok_fact("a", "read", "d")),
                ("POST", "/v1/bundles", {**BUNDLE, "version": 2}),
                ("GET", "/v1/lookup/resources", None),
                ("GET", "/v1/lookup/subjects", None),
            ):
                await call(h, method, path, 503, payload)
        finally:
            ctx.ready.set()
        h.server.runtime.draining = True
        try:
            assert (await call(h, "GET", "/health/ready", 503))["status"] == "stopping"
        finally:
            h.server.runtime.draining = False


async def test_health_without_a_bundle_and_admin_disabled() -> None:
    async with serving(bundle=None, server={"admin_token": ""}) as h:
        assert (await call(h, "GET", "/health/ready", 503))["status"] == "no_bundle"
        err = await call(h, "GET", "/admin/stats", 403, headers=AUTH)
        assert "disabled" in err["error"]["message"]
        assert (await call(h, "POST", "/v1/bundles", 200, BUNDLE))["active"] is True


async def test_size_limits_rate_limit_reload_error_and_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "rune.toml"
    config.write_text("version = 2\n")
    limits = {"max_body_bytes": 2048, "max_batch": 2, "rate_limit_per_s": 0.001}
    server = {**limits, "rate_limit_burst": 12}
    async with serving(config=config, server=server, stream={"token_wait_s": 0.0}) as h:
        # an unreachable token: still 200, a deny with a stale-view error
        token = {"at_least": {"rune.facts": {"0": 10**6}}}
        d = await call(h, "POST", "/v1/authorize", 200, request("a", "r", "d", consistency=token))
        assert d["decision"] == "deny" and d["error"].startswith("stale view")
        blob = {"blob": "x" * 4096}
        err = await call(h, "POST", "/v1/authorize", 413, request("a", "r", "d", context=blob))
        assert err["error"]["type"] == "body_too_large"
        err = await call(h, "POST", "/v1/events", 413, [ok_fact("a", "r", "d")] * 3)
        assert err["error"]["type"] == "batch_too_large"
        await call(h, "POST", "/v1/bundles", 413, {**BUNDLE, "version": 2, "datalog": "%" * 4096})
        config.write_text("version = 2\n[cache]\nmax_entries = 'many'\n")
        report = await call(h, "POST", "/admin/reload", 400, headers=AUTH)
        assert "cache.max_entries" in report["error"]

        def boom(*_: Any) -> Any:
            raise RuntimeError("boom")

        monkeypatch.setattr(h.server.service.ctx.authorizer, "decide_batch", boom)
        await call(h, "POST", "/v1/authorize", 500, request("a", "r", "d"))
        monkeypatch.undo()
        # the calls so far took tokens; empty the bucket (burst 12)
        codes = [(await h.call("GET", "/openapi.yaml"))[0] for _ in range(12)]
        assert codes[0] == 200 and codes[-1] == 429
        err = await call(h, "POST", "/v1/authorize", 429, request("a", "r", "d"))
        assert err["error"]["type"] == "rate_limited"
        await call(h, "GET", "/openapi.yaml", 429)
        await call(h, "GET", "/admin/stats", 429, headers=AUTH)
        # probes and scrapes are never limited
        await call(h, "GET", "/health/live", 200)
        await call(h, "GET", "/health/ready", 200)
        await call(h, "GET", "/metrics", 200)


async def test_every_url_the_document_allows_is_routed_and_answered_in_json() -> None:
    """aiohttp refuses request lines over 8 KiB by default, in plain text and before routing;
    the longest lookup URL the document allows is about 42 KiB."""
    widest = "\U0001f600" * 1024  # ids of 1024 characters of 4 bytes, 12 once percent-encoded
    params = {
        "principal_type": "A::" * 255 + "User",
        "principal_id": widest,
        "action_type": "Action",
        "action_id": widest,
        "resource_type": "Doc",
        "limit": "1000",
    }
    async with serving() as h:
        page = await call(h, "GET", "/v1/lookup/resources", 200, query=urlencode(params))
        assert page == {"items": [], "cursor": None}
        query = urlencode({**params, "cursor": "A" * 8200})
        assert 32 * 1024 < len(query) < MAX_REQUEST_LINE
        err = await call(h, "GET", "/v1/lookup/resources", 422, query=query)
        assert err["error"]["location"] == "cursor"  # not a cursor the server issued
        q = "resource_type=0&resource_id=d&action_type=Action&action_id=read&principal_type=User"
        err = await call(h, "GET", "/v1/lookup/subjects", 422, query=q)
        assert err["error"]["location"] == "resource_type"  # Cedar's grammar, as the schema says
        # beyond the limit: aiohttp's plain-text 400, as the document says
        status, text, resp = await h.call("GET", "/health/live?x=" + "a" * MAX_REQUEST_LINE)
        assert status == 400 and resp.content_type == "text/plain", text
        assert "over 64 KiB" in OPENAPI["info"]["description"]


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "text/plain", "application/x-www-form-urlencoded", "x/y"],
)
async def test_bodies_are_read_as_json_whatever_their_content_type(
    content_type: str | None,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    async with serving(events=[ok_fact("a", "read", "d")]) as h:
        body = orjson.dumps(request("a", "read", "d"))
        status, d, _ = await h.call("POST", "/v1/authorize", raw=body, headers=headers)
        assert (status, d["decision"]) == (200, "allow")
        status, err, _ = await h.call("POST", "/v1/authorize", raw=b"a=1", headers=headers)
        assert (status, err["error"]["type"]) == (400, "malformed_json")


# -- request bodies: the schemas accept exactly what the server accepts ----------------------

U, A, D = uid("User", "u"), uid("Action", "read"), uid("Doc", "d")
REQUESTS = [
    request("u", "read", "d"),
    request("u", "read", "d", id="x", context=None, consistency=None, explain=False),
    request("u", "read", "d", tenant=7, ts="2024-01-01T00:00:00Z"),
    request("u", "read", "d", context={"a": [1, "x", True, {"__entity": U}], "r": {"k": U}}),
    request("u", "read", "d", context={"ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}}),
    request("u", "read", "d", consistency={"at_least": {"rune.policies": {"0": 0}}}),
    request("u", "read", "d", consistency={"at_least": None}),
    {"principal": {"__entity": U}, "action": A, "resource": {"__entity": D}},
    {"principal": {"type": "App::User", "id": ""}, "action": A, "resource": D},
    # a number with a zero fraction is the integer it denotes, as in JSON Schema
    request("u", "read", "d", context={"n": 3.0, "m": [1e3, -0.0], "r": {"k": 2.0}}),
    request("u", "read", "d", consistency={"at_least": {"rune.facts": {"0": 1.0}}}),
    request("u", "read", "d", consistency={"at_least": {"rune.facts": {"0": 2**64 - 1}}}),
    # refused
    request("u", "read", "d", colour="red"),
    request("u", "read", "d", id=7),
    request("u", "read", "d", id=None),
    request("u", "read", "d", explain="yes"),
    request("u", "read", "d", context=[1]),
    request("u", "read", "d", context={"x": 1.5}),
    request("u", "read", "d", context={"x": None}),
    request("u", "read", "d", context={"x": 2**63}),
    request("u", "read", "d", context={"e": {"__entity": U, "more": 1}}),
    request("u", "read", "d", context={"e": {"__extn": {"fn": "ip"}}}),
    request("u", "read", "d", consistency={"at_least": {"rune.facts": {"zero": 1}}}),
    request("u", "read", "d", consistency={"at_least": {"rune.facts": {"0": "1"}}}),
    request("u", "read", "d", consistency={"at_least": {"rune.facts": {"0": 0.5}}}),
    request("u", "read", "d", consistency={"at_least": {"rune.facts": {"0": 2**64}}}),
    request("u", "read", "d", consistency={"at_least": {"rune.changes": {"0": 1}}}),
    request("u", "read", "d", context={"x": 2.0**63}),
    request("u", "read", "d", context={"x": -(2**63) - 1}),  # not read as -2**63
    request("u", "read", "d", consistency={"at_most": {}}),
    request("u", "read", "d", consistency=[]),
    {"principal": U, "action": A},
    {"principal": {"type": "User"}, "action": A, "resource": D},
    {"principal": {**U, "x": 1}, "action": A, "resource": D},
    {"principal": {"type": "1User", "id": "u"}, "action": A, "resource": D},
    {"principal": {"type": "User", "id": "u" * 1025}, "action": A, "resource": D},
    {"principal": {"__entity": U, "type": "User"}, "action": A, "resource": D},
]
EVENTS = [
    ok_fact("u", "read", "d"),
    ok_fact("u", "read", "d", "retract"),
    {"op": "assert", "fact": ["edge", "a", 1, True, {"__entity": U}], "tenant": "t", "ts": 1},
    {"op": "assert", "fact": ["_x"]},
    {"op": "upsert", "entity": {"uid": U}},
    {
        "op": "upsert",
        "entity": {
            "uid": {"__entity": U},
            "attrs": {"dept": "eng", "level": 3, "tags": ["a"], "boss": {"__entity": U}},
            "parents": [uid("Group", "g"), {"__entity": uid("Group", "h")}],
            "tags": None,
        },
    },
    {"op": "upsert", "entity": {"uid": U, "tags": {"t": "v"}}},
    {"op": "delete", "entity": {"uid": U}},
    {"op": "assert", "fact": ["pair", 2.0, 3e0]},
    {"op": "upsert", "entity": {"uid": U, "attrs": {"n": 1e2}}},
    # refused
    {"op": "explode"},
    {"fact": ["edge", "a"]},
    {"op": "assert"},
    {"op": "assert", "fact": []},
    {"op": "assert", "fact": ["Edge", "a"]},
    {"op": "assert", "fact": ["entity", U]},
    {"op": "assert", "fact": ["edge", 1.5]},
    {"op": "assert", "fact": ["edge", None]},
    {"op": "assert", "fact": ["edge", {"type": "T"}]},
    {"op": "assert", "fact": ["edge", *range(65)]},
    {"op": "assert", "fact": ["edge", "a"], "entity": {"uid": U}},
    {"op": "retract", "fact": "edge"},
    {"op": "upsert", "entity": {"attrs": {}}},
    {"op": "upsert", "entity": {"uid": U, "attrs": None}},
    {"op": "upsert", "entity": {"uid": U, "attrs": {"f": 0.5}}},
    {"op": "upsert", "entity": {"uid": U, "parents": [{"id": "g"}]}},
    {"op": "upsert", "entity": {"uid": U, "colour": "red"}},
    {"op": "delete", "entity": {"uid": U, "attrs": {}}},
    {"op": "delete", "entity": U},
]
BUNDLES = [
    {"version": 2},
    {"version": 3, "datalog": "", "cedar": "", "schema": None, "name": "n", "description": 7},
    {
        "version": 4,
        "datalog": "allow(P, A, R) :- ok(P, A, R).",
        "cedar": {"staticPolicies": {}, "templates": {}, "templateLinks": []},
    },
    # refused
    {"datalog": ""},
    {"version": -1},
    {"version": "5"},
    {"version": True},
    {"version": 5, "datalog": None},
    {"version": 5, "cedar": 5},
    {"version": 5, "schema": 5},
    {"version": 5, "colour": "red"},
    {"version": 5.5},
    {"version": 2**63},
    # accepted, last: they raise the active version
    {"version": 2.0**53},
    {"version": 2**63 - 1},
]


@pytest.mark.parametrize(
    ("path", "items", "ok"),
    [
        ("/v1/authorize", REQUESTS, 200),
        ("/v1/events", EVENTS, 200),
        ("/v1/bundles", BUNDLES, 200),
    ],
)
async def test_request_schemas_accept_exactly_what_the_server_accepts(
    path: str, items: list[Any], ok: int
) -> None:
    body = f"#/paths/{_escape(path)}/post/requestBody/content/application~1json/schema"
    async with serving(bundle={"version": 1}) as h:
        for item in items:
            accepted = valid_openapi(body, item)
            raw = json.dumps(item).encode()  # orjson writes no integer beyond 64 bits
            status, answer, _ = await h.call("POST", path, raw=raw)
            assert (status == ok) == accepted, (item, status, answer)
            if not accepted:
                assert status in (400, 409, 422), (item, status)


def test_schemas_reject_what_the_contract_forbids() -> None:
    """The response schemas are not vacuous: broken decisions and errors fail them."""
    good: dict[str, Any] = {
        "id": "r",
        "decision": "deny",
        "reasons": [],
        "errors": [],
        "policy_version": None,
        "watermark": {"rune.facts": {"0": 1}},
        "latency_us": 3,
    }
    decision = component("Decision")
    assert valid_openapi(decision, good)
    for broken in (
        {k: v for k, v in good.items() if k != "reasons"},
        {**good, "decision": "maybe"},
        {**good, "surprise": 1},
        {**good, "watermark": {"rune.facts": {"p0": 1}}},
        {**good, "latency_us": -1},
    ):
        assert not valid_openapi(decision, broken), broken
        assert not valid_asyncapi(decision, broken), broken
    error = component("Error")
    assert valid_openapi(error, {"error": {"type": "t", "message": "m"}})
    assert not valid_openapi(error, {"error": {"type": "t"}})
    assert not valid_openapi(error, {"error": {"type": "t", "message": "m", "location": ""}})


# -- (d): the AsyncAPI document against the topics ------------------------------------------


def messages(channel: str) -> dict[str, str]:
    """Message name -> pointer of the message object, for a channel."""
    out = {}
    for name, msg in ASYNCAPI["channels"][channel]["messages"].items():
        out[name] = _follow(ASYNCAPI, f"#/channels/{channel}/messages/{name}")
        assert msg
    return out


def check_record(channel: str, message: str, key: bytes | None, value: bytes | None) -> None:
    """A record of ``channel`` matches ``message``: payload and key."""
    pointer = messages(channel)[message]
    check_asyncapi(f"{pointer}/payload", None if value is None else orjson.loads(value))
    check_asyncapi(f"{pointer}/bindings/kafka/key", None if key is None else key.decode())


def test_asyncapi_channels_are_the_topics_of_the_settings() -> None:
    assert ASYNCAPI["asyncapi"] == "3.0.0"
    settings = Settings()
    topics = settings.topics.model_dump()
    channels = {name: ch["address"] for name, ch in ASYNCAPI["channels"].items()}
    assert channels == topics  # channel ids are the settings' topic roles
    assert set(channels.values()) == {
        "rune.facts",
        "rune.policies",
        "rune.requests",
        "rune.decisions",
        "rune.changes",
        "rune.dlq",
        "rune.state",
    }
    by_address = {ch["address"]: ch for ch in ASYNCAPI["channels"].values()}
    for spec in topic_specs(settings):
        kafka = by_address[spec.name]["bindings"]["kafka"]
        compact = spec.configs.get("cleanup.policy") == "compact"
        assert kafka["topicConfiguration"]["cleanup.policy"] == (
            ["compact"] if compact else ["delete"]
        ), spec.name
        if spec.partitions == 1:  # fixed by RUNE; the others follow kafka.partitions
            assert kafka["partitions"] == 1, spec.name
        else:
            assert "partitions" not in kafka, spec.name
        if compact:  # tombstones are documented on every compacted topic
            payloads = [_at(ASYNCAPI, p)["payload"] for p in messages(_channel(spec.name)).values()]
            assert {"$ref": component("Tombstone")} in payloads, spec.name


def _channel(address: str) -> str:
    return next(str(n) for n, ch in ASYNCAPI["channels"].items() if ch["address"] == address)


def test_asyncapi_operations_use_their_channels_messages_and_examples_validate() -> None:
    used: set[str] = set()
    for name, op in ASYNCAPI["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel = op["channel"]["$ref"]
        for msg in op["messages"]:
            assert msg["$ref"].startswith(f"{channel}/messages/"), (name, msg)
            used.add(msg["$ref"])
    declared = {
        f"#/channels/{c}/messages/{m}"
        for c, ch in ASYNCAPI["channels"].items()
        for m in ch["messages"]
    }
    assert declared == used
    for name, msg in ASYNCAPI["components"]["messages"].items():
        for example in msg.get("examples", []):
            check_asyncapi(f"#/components/messages/{name}/payload", example["payload"])


def test_shared_schemas_are_identical_in_both_documents() -> None:
    http = OPENAPI["components"]["schemas"]
    topics = ASYNCAPI["components"]["schemas"]
    shared = set(http) & set(topics)
    assert {"Event", "Request", "Decision", "Bundle", "Watermark", "ConsistencyToken"} <= shared
    for name in sorted(shared):
        assert http[name] == topics[name], f"schema {name} differs between the documents"
    # and nothing a shared schema refers to is missing or different
    for name in shared:
        for ref in _refs(topics[name]):
            assert ref.removeprefix("#/components/schemas/") in shared, (name, ref)


def _event_message(event: dict[str, Any]) -> str:
    return "factEvent" if event["op"] in ("assert", "retract") else "entityEvent"


def test_the_bundled_example_matches_the_topic_schemas() -> None:
    lines = (EXAMPLE / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 5
    for line in lines:
        event = orjson.loads(line)
        check_record("facts", _event_message(event), event_key(event), line.encode())
        check_record("facts", "tombstone", event_key(event), None)
        assert valid_openapi(component("Event"), event)
    bundle = (EXAMPLE / "bundle.json").read_bytes()
    check_record("policies", "bundle", b"default", bundle)
    check_record("policies", "tombstone", b"default", None)


def test_requests_and_decisions_of_rune_run_match_the_topic_schemas() -> None:
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 0, result.output
    decisions = {}
    for line in result.stdout.splitlines():
        d = orjson.loads(line)
        check_record("decisions", "decision", d["id"].encode(), line.encode())
        decisions[d["id"]] = d
    request_payload = messages("requests")["request"] + "/payload"
    lines = (EXAMPLE / "requests.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(decisions) > 1
    for line in lines:
        req = orjson.loads(line)
        # the schema accepts exactly the requests the service decides without an error
        understood = "error" not in decisions[req["id"]]
        assert valid_asyncapi(request_payload, req) == understood, req
    assert any("error" in d for d in decisions.values())
    assert any("explanation" in d for d in decisions.values())


async def test_records_written_by_the_service_match_the_topic_schemas() -> None:
    changefeed: dict[str, Any] = {"changefeed_relations": ["ok_count"]}
    preload = [ok_fact("al", "read", "d1"), ok_fact("bo", "read", "d1")]
    async with serving(events=preload, stream=changefeed) as h:
        t = h.server.service.ctx.settings.topics
        # junk the service must dead-letter: undecodable event, bad tombstone key, bad bundle
        h.log.append(Outgoing(t.facts, b"junk", b"{not json"))
        h.log.append(Outgoing(t.facts, b"x:junk", None))
        h.log.append(Outgoing(t.facts, None, b'{"op": "explode"}'))
        h.log.append(Outgoing(t.policies, b"default", b"[]"))
        h.log.append(Outgoing(t.policies, b"default", orjson.dumps({"version": 0})))
        # writes over HTTP (applied before they answer: ingest has handled the junk too)
        events = [ok_fact("bo", "read", "d1", "retract"), {"op": "delete", "entity": {"uid": U}}]
        assert (await h.call("POST", "/v1/events", events))[0] == 200
        assert (await h.call("POST", "/v1/bundles", {**BUNDLE, "version": 2}))[0] == 200
        reqs = [request("al", "read", "d1", id="k1"), request("bo", "read", "d1", id="k2")]
        assert (await h.call("POST", "/v1/authorize", reqs))[0] == 200

        junk = {b"junk", b"x:junk", None}
        written = []
        for r in h.log.records(t.facts):
            if r.key in junk:
                continue
            event = orjson.loads(r.value or b"null")
            assert r.key == event_key(event)
            check_record("facts", _event_message(event), r.key, r.value)
            written.append(event)
        assert all(e in written for e in events)
        bundles = [r for r in h.log.records(t.policies) if r.value not in (b"[]", b'{"version":0}')]
        assert len(bundles) == 2  # the harness's and the one posted
        for r in bundles:
            check_record("policies", "bundle", r.key, r.value)

        decided = h.log.records(t.decisions)
        assert [r.key for r in decided] == [b"k1", b"k2"]
        for r in decided:
            check_record("decisions", "decision", r.key, r.value)

        dead = h.log.records(t.dlq)
        stages = []
        for r in dead:
            check_record("dlq", "deadLetter", r.key, r.value)
            letter = orjson.loads(r.value or b"null")
            stages.append(letter["stage"])
            source = next(
                s
                for s in h.log.records(letter["topic"])
                if (s.partition, s.offset) == (letter["partition"], letter["offset"])
            )
            assert letter["key_b64"] == (
                base64.b64encode(source.key).decode() if source.key is not None else None
            )
            assert letter["value_b64"] == (
                base64.b64encode(source.value).decode() if source.value is not None else None
            )
        assert sorted(stages) == ["ingest"] * 3 + ["policy"] * 2

        kinds = set()
        for r in h.log.records(t.changes):
            if r.key == b"__checkpoint__":
                kind = "checkpoint"
            elif r.value is None:
                kind = "tombstone"
            else:
                kind = "change"
            check_record("changes", kind, r.key, r.value)
            kinds.add(kind)
        assert kinds == {"change", "tombstone", "checkpoint"}
