"""Cedar's own hand-written tests, run through ``rune.Authorizer`` (entities as upsert events,
policies as a bundle). Data: tests/data/cedar (Apache-2.0, see NOTICE there).

Each expected decision, the determining policy ids (``reason``) and the number of errors must
match. Cedar itself (cedarpy on the original entity file) is checked to agree as well.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from rune.authorizer import Authorizer

DATA = Path(__file__).resolve().parents[1] / "data" / "cedar"
INTEGRATION = DATA / "integration"
CLI = DATA / "cli"


def _integration_cases() -> list[Any]:
    cases = []
    for path in sorted((INTEGRATION / "tests").rglob("*.json")):
        spec = json.loads(path.read_text())
        if "requests" not in spec and "queries" not in spec:
            continue
        for i, query in enumerate(spec.get("requests") or spec.get("queries")):
            cases.append(pytest.param(spec, query, id=f"{path.stem}[{i}]"))
    return cases


def _bundle(spec: dict[str, Any]) -> dict[str, Any]:
    policies_text = (INTEGRATION / spec["policies"]).read_text()
    cedar: Any = json.loads(policies_text) if spec.get("policyFormat") == "json" else policies_text
    bundle: dict[str, Any] = {"version": 1, "cedar": cedar}
    if "schema" in spec:
        schema_text = (INTEGRATION / spec["schema"]).read_text()
        bundle["schema"] = schema_text
    return bundle


def _expected(query: dict[str, Any]) -> tuple[str, set[str], int]:
    reasons = query.get("reason", query.get("reasons", []))
    return query["decision"].lower(), set(reasons), len(query.get("errors", []))


@pytest.mark.parametrize(("spec", "query"), _integration_cases())
def test_integration(spec: dict[str, Any], query: dict[str, Any]) -> None:
    entities = json.loads((INTEGRATION / spec["entities"]).read_text())
    az = Authorizer()
    az.load_bundle(_bundle(spec))
    az.apply_batch([{"op": "upsert", "entity": e} for e in entities])
    request = {
        "id": "q",
        "principal": query["principal"],
        "action": query["action"],
        "resource": query["resource"],
        "context": query.get("context", {}),
    }
    decision = az.check(request)
    want_decision, want_reasons, want_errors = _expected(query)
    assert "error" not in decision, decision
    assert decision["decision"] == want_decision, query["description"]
    assert set(decision["reasons"]) == want_reasons
    assert len(decision["errors"]) == want_errors
    assert decision["policy_version"] == 1

    # Cedar itself, on the original entity file, agrees.
    bundle = _bundle(spec)
    policies = (
        cedarpy.PolicySet.from_json_str(json.dumps(bundle["cedar"]))
        if isinstance(bundle["cedar"], dict)
        else cedarpy.PolicySet.from_str(bundle["cedar"])
    )
    schema = bundle.get("schema")
    handle = (
        cedarpy.Schema.from_json_str(schema)
        if schema and schema.lstrip().startswith("{")
        else (cedarpy.Schema.from_str(schema) if schema else None)
    )
    direct = cedarpy.is_authorized(
        {k: request[k] for k in ("principal", "action", "resource", "context")},
        policies,
        json.dumps(entities),
        schema=handle,
    )
    assert direct.decision.value.lower() == want_decision


_UID = re.compile(r'\A(.+?)::(".*")\Z', re.S)


def _parse_uid(text: str) -> dict[str, str]:
    m = _UID.match(text)
    assert m, text
    return {"type": m.group(1), "id": json.loads(m.group(2))}


def _cli_cases() -> list[Any]:
    cases = []
    for folder in sorted(CLI.iterdir()):
        policy = next(p for p in folder.iterdir() if p.name.startswith("policy"))
        tests = json.loads((folder / "tests-combined.json").read_text())
        for i, test in enumerate(tests):
            cases.append(pytest.param(policy.read_text(), test, id=f"{folder.name}[{i}]"))
    return cases


@pytest.mark.parametrize(("policy", "test"), _cli_cases())
def test_cli_sandbox(policy: str, test: dict[str, Any]) -> None:
    az = Authorizer()
    az.load_bundle({"version": 1, "cedar": policy})
    az.apply_batch([{"op": "upsert", "entity": e} for e in test["entities"]])
    r = test["request"]
    decision = az.check(
        {
            "id": "t",
            "principal": _parse_uid(r["principal"]),
            "action": _parse_uid(r["action"]),
            "resource": _parse_uid(r["resource"]),
            "context": r.get("context", {}),
        }
    )
    assert decision["decision"] == test["decision"]
    assert set(decision["reasons"]) == set(test["reason"])
    want_errors = test.get("num_errors", 1 if test.get("has_error") else 0)
    assert len(decision["errors"]) == want_errors
