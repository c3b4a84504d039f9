"""The typed Decision: its record (contract v1), its encoding under the topic's size limit."""

from __future__ import annotations

import orjson

from rune.policies.decision import MAX_DECISION_BYTES, Decision


def decision(**changes: object) -> Decision:
    base = Decision("r", True, ("p1",), (), 3, {"rune.facts": {"0": 7}}, 12)
    return base._replace(**changes)


def test_record_is_contract_v1_and_owns_its_watermark() -> None:
    shared = {"rune.facts": {"0": 7}}
    d = decision(watermark=shared)
    record = d.to_json()
    assert record == {
        "id": "r",
        "decision": "allow",
        "reasons": ["p1"],
        "errors": [],
        "policy_version": 3,
        "watermark": {"rune.facts": {"0": 7}},
        "latency_us": 12,
    }
    record["watermark"]["rune.facts"]["0"] = 99  # a caller editing its copy
    assert shared == {"rune.facts": {"0": 7}}
    assert orjson.loads(d.encode()) == d.to_json()


def test_optional_fields_appear_only_when_set() -> None:
    d = decision(allowed=False, error="stale view", explanation={"why": 1}, request={"a": 1})
    record = d.to_json()
    assert record["decision"] == "deny" and record["error"] == "stale view"
    assert record["explanation"] == {"why": 1} and record["request"] == {"a": 1}
    assert "error" not in decision().to_json()


def test_oversized_decisions_drop_the_explanation_not_the_record() -> None:
    small = decision(explanation={"tree": "x" * 100})
    assert orjson.loads(small.encode()) == small.to_json()
    big = decision(allowed=False, explanation={"tree": "x" * MAX_DECISION_BYTES})
    raw = big.encode()
    got = orjson.loads(raw)
    assert len(raw) < MAX_DECISION_BYTES and "explanation" not in got
    assert got["decision"] == "deny" and "explanation dropped" in got["error"]


def test_huge_reasons_are_dropped_last() -> None:
    d = decision(errors=tuple("e" * 1000 for _ in range(2000)))
    raw = d.encode()
    got = orjson.loads(raw)
    assert len(raw) < MAX_DECISION_BYTES
    assert got["errors"] == [] and "dropped" in got["error"] and got["id"] == "r"
