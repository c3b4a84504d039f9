"""The typed Decision: its record (contract v1), its encoding under the topic's size limit."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from rune.policies.decision import MAX_DECISION_BYTES, Decision

texts = st.text(max_size=12)
watermarks = st.dictionaries(texts, st.dictionaries(texts, st.integers(0, 2**40), max_size=3))


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


@given(
    st.one_of(st.none(), texts),
    st.booleans(),
    st.lists(texts, max_size=3).map(tuple),
    st.lists(texts, max_size=3).map(tuple),
    st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    st.sampled_from([{}, {"rune.facts": {"0": 5}}]) | watermarks,
    st.integers(0, 10**9),
    st.one_of(st.none(), texts),
)
def test_encoding_is_the_json_of_the_record(
    rid: str | None,
    allowed: bool,
    reasons: tuple[str, ...],
    errors: tuple[str, ...],
    version: int | None,
    watermark: dict[str, dict[str, int]],
    latency: int,
    error: str | None,
) -> None:
    d = Decision(rid, allowed, reasons, errors, version, watermark, latency, error)
    assert d.encode() == orjson.dumps(d.to_json())
    again = d._replace(policy_version=None if version else 1)  # same watermark, other version
    assert again.encode() == orjson.dumps(again.to_json())
