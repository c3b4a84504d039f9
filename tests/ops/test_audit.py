"""Decision audit: JSON log lines, pseudonyms in logs and records, metrics; the rate limiter;
reload merging. Pure (no I/O besides an in-memory log stream)."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from rune.config import Logging, load_settings
from rune.config.reload import SAFE, merge_reload
from rune.http.limits import RateLimiter
from rune.ops.audit import Audit, Pseudonymizer
from rune.ops.logs import configure_logging
from rune.ops.metrics import Metrics
from rune.policies.decision import Decision

KEY = "k" * 32
ALICE = {"type": "User", "id": "alice"}


def decision(outcome: str = "allow", **more: Any) -> Decision:
    return Decision("r1", outcome == "allow", (), (), 1, {}, 40)._replace(**more)


def req() -> dict[str, Any]:
    return {
        "id": "r1",
        "principal": ALICE,
        "action": {"type": "Action", "id": "read"},
        "resource": {"type": "Doc", "id": "d1"},
    }


def audited(cfg: Logging, decisions: list[Decision]) -> tuple[list[Decision], list[Any]]:
    """The shaped decisions and the JSON log lines of auditing ``decisions``."""
    stream = io.StringIO()
    configure_logging(cfg, stream)
    try:
        shaped = Audit(cfg, Metrics()).decided([req()] * len(decisions), decisions, "http")
    finally:
        configure_logging(Logging())
    return shaped, [orjson.loads(line) for line in stream.getvalue().splitlines()]


def log_lines(cfg: Logging, decisions: list[Decision]) -> list[dict[str, Any]]:
    return audited(cfg, decisions)[1]


def test_decision_log_line_is_json_with_who_what_and_how_long() -> None:
    (line,) = log_lines(Logging(decisions="all"), [decision()])
    assert line["event"] == "decision" and line["level"] == "info"
    assert line["principal"] == ALICE and line["resource"] == {"type": "Doc", "id": "d1"}
    assert line["action"]["id"] == "read" and line["decision"] == "allow"
    assert line["latency_us"] == 40 and line["source"] == "http" and "timestamp" in line


def test_decisions_setting_filters_lines() -> None:
    both = [decision("allow"), decision("deny")]
    assert [x["decision"] for x in log_lines(Logging(decisions="deny"), both)] == ["deny"]
    assert log_lines(Logging(decisions="none"), both) == []


def test_pseudonymized_principal_in_log_and_record() -> None:
    cfg = Logging(decisions="all", pseudonymize=True, pseudonym_key=KEY, include_request=True)
    original = decision(
        "deny",
        error='User::"alice" is suspended',
        explanation={"rule": "deny", "args": [ALICE, {"type": "Doc", "id": "d1"}]},
    )
    (shaped,), (line,) = audited(cfg, [original])
    alias = Pseudonymizer(KEY.encode()).pseudonym("User", "alice")
    assert line["principal"] == {"type": "User", "id": alias}
    d = shaped.to_json()
    assert d["request"]["principal"] == {"type": "User", "id": alias}
    assert d["explanation"]["args"][0] == {"type": "User", "id": alias}
    assert "alice" not in orjson.dumps(d).decode() and "alice" not in orjson.dumps(line).decode()
    assert d["request"]["resource"] == {"type": "Doc", "id": "d1"}  # only the principal
    assert "alice" in orjson.dumps(original.to_json()).decode()  # a shaped copy, not an edit


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_pseudonyms_are_stable_keyed_and_distinct(a: str, b: str) -> None:
    p = Pseudonymizer(KEY.encode())
    assert p.pseudonym("User", a) == p.pseudonym("User", a)
    assert p.pseudonym("User", a) != Pseudonymizer(b"other-key-0123456789").pseudonym("User", a)
    if a != b:
        assert p.pseudonym("User", a) != p.pseudonym("User", b)


def test_metrics_count_by_outcome_and_source() -> None:
    m = Metrics()
    Audit(Logging(decisions="none"), m).decided(
        [req()] * 3, [decision("allow"), decision("deny"), decision("allow")], "kafka"
    )
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(m.render().decode())
        for s in f.samples
    }
    assert got[("authorization_requests_total", (("decision", "allow"), ("source", "kafka")))] == 2
    assert got[("authorization_requests_total", (("decision", "deny"), ("source", "kafka")))] == 1
    assert got[("authorization_latency_seconds_count", (("source", "kafka"),))] == 3


def test_rate_limiter_refills_and_bounds_clients() -> None:
    limiter = RateLimiter(rate_per_s=2.0, burst=2)
    assert [limiter.take("a", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert limiter.take("b", now=0.0) == 0.0  # per client
    assert limiter.take("a", now=0.6) == 0.0  # refilled
    limiter.configure(0, 1)
    assert all(limiter.take("a", now=0.6) == 0.0 for _ in range(10))  # 0 = off


def test_reload_merges_only_safe_keys() -> None:
    old = load_settings()
    new = load_settings(
        None,
        {
            "server": {"port": 9, "rate_limit_per_s": 5.0, "admin_token": "t" * 20},
            "kafka": {"group_id": "other"},
            "cache": {"ttl_seconds": 1.0},
        },
    )
    merged, report = merge_reload(old, new)
    assert set(report.applied) == {
        "server.rate_limit_per_s",
        "server.admin_token",
        "cache.ttl_seconds",
    }
    assert set(report.needs_restart) == {"server.port", "kafka.group_id"}
    assert merged.server.port == old.server.port and merged.kafka == old.kafka
    assert merged.server.rate_limit_per_s == 5.0 and merged.cache.ttl_seconds == 1.0
    assert all(key in SAFE for key in report.applied)


@pytest.mark.parametrize("key", sorted(SAFE))
def test_every_safe_key_exists(key: str) -> None:
    section, name = key.split(".")
    assert name in type(getattr(load_settings(), section)).model_fields
