"""Health, metrics, admin authentication, rate limiting and settings reload, on a real
server (loopback)."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from rune.connectors.base import Outgoing
from tests.http.harness import ADMIN, BUNDLE, ok_fact, request, serving

AUTH = {"Authorization": f"Bearer {ADMIN}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_health_live_and_ready_follow_the_bundle() -> None:
    async with serving(bundle=None) as h:
        status, body, _ = await h.call("GET", "/health/live")
        assert status == 200 and body["status"] == "alive" and body["pid"] == os.getpid()
        status, body, _ = await h.call("GET", "/health/ready")
        assert status == 503 and body["status"] == "no_bundle"
        status, _, _ = await h.call("POST", "/v1/bundles", BUNDLE)
        assert status == 200
        status, body, _ = await h.call("GET", "/health/ready")
        assert status == 200 and body["status"] == "ready" and body["policy_version"] == 1


async def test_metrics_count_decisions_cache_views_and_dead_letters() -> None:
    async with serving(events=[ok_fact("alice", "read", "d1")]) as h:
        for _ in range(3):
            await h.call("POST", "/v1/authorize", request("alice", "read", "d1"))
        await h.call("POST", "/v1/authorize", request("bob", "read", "d1"))
        await h.call("POST", "/v1/authorize", request("bob", "read", "d2", context={"x": 1}))
        h.log.append(Outgoing("rune.facts", b"junk", b"{not json"))
        await h.call("POST", "/v1/events", ok_fact("carol", "read", "d1"))  # waits for ingest
        status, text, resp = await h.call("GET", "/metrics")
        assert status == 200 and resp.content_type == "text/plain"
        m = samples(text)
        allow = (("decision", "allow"), ("source", "http"))
        deny = (("decision", "deny"), ("source", "http"))
        assert m[("authorization_requests_total", allow)] == 3
        assert m[("authorization_requests_total", deny)] == 2
        assert m[("authorization_latency_seconds_count", (("source", "http"),))] == 5
        assert m[("decision_cache_hits_total", ())] == 2  # alice's 2nd and 3rd
        assert m[("decision_cache_misses_total", ())] == 3
        assert m[("policy_evaluation_count_total", ())] >= 3  # the Cedar policy was consulted
        assert m[("view_size", (("kind", "base"), ("relation", "ok")))] == 2
        assert m[("view_size", (("kind", "derived"), ("relation", "ok_count")))] == 2
        assert m[("dead_letters_total", (("stage", "ingest"),))] == 1
        assert m[("bundle_version", ())] == 1 and m[("rune_ready", ())] == 1
        assert m[("datalog_evaluation_time_seconds_count", (("kind", "events"),))] >= 1
        assert m[("datalog_evaluation_time_seconds_count", (("kind", "bundle"),))] == 1
        applied = [k for k in m if k[0] == "applied_offset"]
        lag = [v for k, v in m.items() if k[0] == "consumer_lag"]
        assert applied and lag and all(v == 0 for v in lag)
        route = (("route", "/v1/authorize"), ("status", "200"))
        assert m[("http_requests_total", route)] == 5


async def test_admin_routes_need_the_bearer_token() -> None:
    async with serving(events=[ok_fact("a", "read", "d")]) as h:
        await h.call("POST", "/v1/authorize", request("a", "read", "d"))
        status, err, resp = await h.call("POST", "/admin/cache/clear")
        assert status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        status, err, _ = await h.call(
            "POST", "/admin/cache/clear", headers={"Authorization": "Bearer wrong"}
        )
        assert status == 403 and err["error"]["type"] == "forbidden"
        status, body, _ = await h.call("POST", "/admin/cache/clear", headers=AUTH)
        assert status == 200 and body == {"cleared": 1}
        status, body, _ = await h.call("GET", "/admin/config", headers=AUTH)
        assert status == 200 and body["server"]["admin_token"] == "**********"
        status, body, _ = await h.call("GET", "/admin/stats", headers=AUTH)
        assert status == 200 and body["relations"]["ok"]["rows"] == 1


async def test_admin_api_is_disabled_without_a_configured_token() -> None:
    async with serving(server={"admin_token": ""}) as h:
        for headers in (AUTH, {"Authorization": "Bearer "}, {}):
            status, err, resp = await h.call("POST", "/admin/cache/clear", headers=headers)
            assert status == 403 and "disabled" in err["error"]["message"], headers
            assert "WWW-Authenticate" not in resp.headers  # no credentials could open it


async def test_rate_limit_answers_429_and_spares_probes() -> None:
    async with serving(server={"rate_limit_per_s": 0.001, "rate_limit_burst": 2}) as h:
        codes = [
            (await h.call("POST", "/v1/authorize", request("a", "r", "d")))[0] for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        status, err, resp = await h.call("POST", "/v1/authorize", request("a", "r", "d"))
        assert status == 429 and int(resp.headers["Retry-After"]) >= 1
        assert err["error"]["type"] == "rate_limited"
        assert (await h.call("GET", "/health/live"))[0] == 200
        status, text, _ = await h.call("GET", "/metrics")
        assert status == 200 and samples(text)[("rate_limited_total", ())] == 2


async def test_reload_applies_the_safe_subset(tmp_path: Path) -> None:
    config = tmp_path / "rune.toml"
    config.write_text("version = 2\n[server]\nrate_limit_per_s = 0.001\nrate_limit_burst = 1\n")
    async with serving(config=config) as h:
        assert (await h.call("POST", "/v1/authorize", request("a", "r", "d")))[0] == 200
        assert (await h.call("POST", "/v1/authorize", request("a", "r", "d")))[0] == 429
        config.write_text(
            "version = 2\n[server]\nrate_limit_per_s = 1000.0\nhost = '0.0.0.0'\n"
            "[cache]\nmax_entries = 7\n"
        )
        # health is not rate limited, /admin is: reload through the server object (as SIGHUP)
        report = h.server.reload()
        assert "server.rate_limit_per_s" in report.applied and "cache.max_entries" in report.applied
        assert report.needs_restart == ("server.host",)
        assert h.server.service.ctx.authorizer.cache_stats().entries <= 7
        assert (await h.call("POST", "/v1/authorize", request("a", "r", "d")))[0] == 200
        config.write_text("version = 2\n[cache]\nmax_entries = 'many'\n")
        status, body, _ = await h.call("POST", "/admin/reload", headers=AUTH)
        assert status == 400 and "cache.max_entries" in body["error"]
        assert h.server.runtime.settings.server.rate_limit_per_s == 1000.0  # nothing changed
