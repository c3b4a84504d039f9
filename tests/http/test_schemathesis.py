"""The OpenAPI document is the contract: schemathesis, reading ``/openapi.yaml`` from a real
``rune serve`` (embedded log, the bundled example, loopback), generates requests from it and
checks every answer.

Phases: the document's examples, coverage (boundary and negative values of every parameter and
schema keyword, unexpected methods, content-type probes) and fuzzing (random positive and
negative requests), ``MAX_EXAMPLES`` per operation and phase, from a fixed seed (draws still
vary a little between processes, with Python's hash randomization): about 3,800 requests in
under a minute on 2 cores. ``RUNE_SCHEMATHESIS_EXAMPLES`` and
``RUNE_SCHEMATHESIS_SEED`` explore further (1,500 examples, about 7 minutes, pass too).

Checks: every one that applies to a stateless API, among them not_a_server_error,
status_code_conformance, content_type_conformance, response_headers_conformance,
response_schema_conformance, negative_data_rejection (a request the document forbids is
refused), positive_data_acceptance (a request the document allows is accepted) and
unsupported_method. No response-time check: timing is not asserted here.
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import schemathesis
import schemathesis.engine
import yaml
from schemathesis import Config
from schemathesis.engine import events as ev

from tests.http.harness import ROOT, request, rune_serve, serving, uid

ADMIN = "schemathesis-admin-token"
MAX_EXAMPLES = int(os.environ.get("RUNE_SCHEMATHESIS_EXAMPLES", "250"))
SEED = int(os.environ.get("RUNE_SCHEMATHESIS_SEED", "20261206"))
SPEC = ROOT / "rune" / "http" / "spec" / "openapi.yaml"


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    """``rune serve`` as a process: embedded log, bundled example, no rate limit (429s would
    only hide answers), no wait for consistency tokens (generated offsets are rarely reached:
    each would wait ``token_wait_s`` before its stale-view deny), decisions not logged."""
    env = {
        "RUNE_SERVER__ADMIN_TOKEN": ADMIN,
        "RUNE_SERVER__RATE_LIMIT_PER_S": "0",
        "RUNE_STREAM__TOKEN_WAIT_S": "0",
        "RUNE_LOGGING__DECISIONS": "none",
        "RUNE_LOGGING__LEVEL": "error",
    }
    with rune_serve(env) as url:
        yield url


def _config(seed: int, **more: Any) -> Config:
    return Config.from_dict(
        {
            **more,
            "seed": seed,
            "workers": 1,
            "headers": {"Authorization": f"Bearer {ADMIN}"},
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": True},
        }
    )


# -- refusals no JSON Schema can state ---------------------------------------------------------
#
# positive_data_acceptance expects every request the document allows to be accepted. A few
# refusals depend on what no schema can express: the active bundle, what compiles, what Cedar
# reads, which cursors the server issued. The document names each of them; here each is matched
# exactly (operation, status, error type, and the location or message that names the reason),
# and only such refusals of schema-valid requests are let through. Anything else still fails.


@dataclass(frozen=True)
class Refusal:
    operation: str
    status: int
    type: str
    where: str
    """A regular expression matched against ``location`` and ``message``."""
    why: str


SEMANTIC_REFUSALS = (
    Refusal("POST /v1/bundles", 400, "invalid_bundle", r"^(datalog \d+:\d+|cedar|schema)",
            "the Datalog or Cedar text does not compile, or the Cedar schema does not parse or "
            "refuses the policies"),
    Refusal("POST /v1/events", 422, "invalid_event", r"has \d+ arguments?, this fact has \d+",
            "a fact of another arity than its relation's (set by the bundle or earlier facts)"),
    Refusal("POST /v1/events", 422, "invalid_event", r"Cedar says",
            "an entity Cedar refuses: an extension function or argument it cannot read"),
    Refusal("GET /v1/lookup/resources", 422, "invalid_request", r"^cursor$",
            "a cursor the server did not issue"),
    Refusal("GET /v1/lookup/subjects", 422, "invalid_request", r"^cursor$",
            "a cursor the server did not issue"),
    *(
        Refusal(op, 422, "invalid_request", r"the model has no ",
                "a type, relation or permission the active model does not define")
        for op in ("GET /v1/zanzibar/lookup/resources", "GET /v1/zanzibar/lookup/subjects")
    ),
    *(
        Refusal(op, 422, "invalid_request", r"^cursor$", "a cursor the server did not issue")
        for op in ("GET /v1/zanzibar/lookup/resources", "GET /v1/zanzibar/lookup/subjects")
    ),
)  # fmt: skip


def semantic_refusal(operation: str, response: Any) -> Refusal | None:
    try:
        error = orjson.loads(response.content)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    for r in SEMANTIC_REFUSALS:
        if (r.operation, r.status, r.type) == (
            operation,
            response.status_code,
            error["type"],
        ) and any(re.search(r.where, error.get(k, "")) for k in ("location", "message")):
            return r
    return None


# -- known deviations, owned outside rune/http ---------------------------------------------
#
# Bodies the document forbids that the server once accepted (the tests below pin their
# refusal). KNOWN_DEVIATIONS would list checks of bodies whose failures are not reported,
# while a deviation is being fixed; it is empty.


def _nodes(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def _falsy_non_boolean_explain(body: Any) -> bool:
    items = body if isinstance(body, list) else [body]
    return any(
        isinstance(i, dict)
        and "explain" in i
        and type(i["explain"]) is not bool
        and not i["explain"]
        for i in items
    )


def _extn_with_arg_and_args(body: Any) -> bool:
    return any(
        isinstance(n, dict)
        and isinstance(n.get("__extn"), dict)
        and {"arg", "args"} <= n["__extn"].keys()
        for n in _nodes(body)
    )


def _non_ascii_digit_partition(body: Any) -> bool:
    items = body if isinstance(body, list) else [body]
    for item in items:
        token = item.get("consistency") if isinstance(item, dict) else None
        at_least = token.get("at_least") if isinstance(token, dict) else None
        for parts in at_least.values() if isinstance(at_least, dict) else ():
            if isinstance(parts, dict) and any(p.isdigit() and not p.isascii() for p in parts):
                return True
    return False


KNOWN_DEVIATIONS: tuple[Any, ...] = ()
"""Checks of a request body; a failure of a request that passes one is not reported."""


def _keep_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """``filter_failure`` hook: False drops a failure (a semantic refusal, a known deviation)."""
    if failure.code == "ST202" and semantic_refusal(case.operation.label, response):
        return False
    return not any(known(case.body) for known in KNOWN_DEVIATIONS)


OPERATIONS = sorted(
    op["operationId"]
    for item in yaml.safe_load(SPEC.read_text(encoding="utf-8"))["paths"].values()
    for op in item.values()
)


GENERATOR_LIMITATION = re.compile(r"Cannot generate an array with \d+ demanded elements")
"""schemathesis 4.32 sometimes fails to build a strategy for a mutated (negative) array schema
(the fact of an event): its generator gives up on that draw; no request is sent, so it is not an
answer of the server."""


def _failures(events: Iterable[Any]) -> tuple[int, list[str]]:
    """How many cases ran, and a description of each failed check or error."""
    cases = 0
    out: list[str] = []
    for event in events:
        if isinstance(event, ev.ScenarioFinished):
            rec = event.recorder
            cases += len(rec.cases)
            for case_id, checks in rec.checks.items():
                for check in checks:
                    info = check.failure_info
                    if info is None:
                        continue
                    interaction = rec.interactions.get(case_id)
                    answer = ""
                    if interaction is not None and interaction.response is not None:
                        r = interaction.response
                        answer = f"{r.status_code} {r.content[:300]!r}"
                    curl = info.code_sample[:1500]
                    out.append(
                        f"{check.name}: {info.failure.title}\n{info.failure.message[:600]}\n"
                        f"  -> {answer}\n  {curl}"
                    )
        elif isinstance(event, ev.NonFatalError):
            if GENERATOR_LIMITATION.fullmatch(str(event.value)):
                continue
            trace = "".join(traceback.format_exception(event.value)[-12:])
            out.append(f"error in {event.label}: {event.value!r}\n{trace}")
        elif isinstance(event, ev.FatalError):
            out.append(f"fatal: {event.exception!r}")
    return cases, out


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_the_server_answers_as_its_openapi_document_says(served: str, operation_id: str) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.yaml", config=_config(SEED))
    schema = schema.include(operation_id=operation_id)
    schema.hook("filter_failure")(_keep_failure)
    cases, failures = _failures(schemathesis.engine.from_schema(schema).execute())
    assert cases > 0
    assert not failures, f"{len(failures)} of {cases} cases failed:\n\n" + "\n\n".join(failures)


def test_the_checks_catch_a_document_that_drifted(served: str) -> None:
    """The harness is not vacuous: a document that says what the server does not do fails."""
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    live = doc["paths"]["/health/live"]["get"]["responses"]["200"]["content"]["application/json"]
    live["schema"]["properties"]["status"] = {"const": "dead"}
    limit = doc["components"]["parameters"]["limit"]["schema"]
    limit["maximum"] = 5000  # the server takes at most 1000
    schema = schemathesis.openapi.from_dict(doc, config=_config(SEED, **{"base-url": served}))
    schema = schema.include(operation_id=["live", "lookupResources"])
    schema.hook("filter_failure")(_keep_failure)
    _, failures = _failures(schemathesis.engine.from_schema(schema).execute())
    assert any(f.startswith("response_schema_conformance") and "dead" in f for f in failures)
    assert any(f.startswith("positive_data_acceptance") and "limit" in f for f in failures)


async def test_an_explain_that_is_not_a_boolean_is_refused() -> None:
    async with serving() as h:
        for explain in ({}, [], "", 0, None):
            status, body, _ = await h.call(
                "POST", "/v1/authorize", request("a", "read", "d", explain=explain)
            )
            assert status == 422, (explain, body)
            assert _falsy_non_boolean_explain(request("a", "read", "d", explain=explain))


async def test_an_extension_value_with_arg_and_non_array_args_is_refused() -> None:
    extn = {"__extn": {"fn": "ip", "arg": "10.0.0.1", "args": {}}}
    upsert = {"op": "upsert", "entity": {"uid": uid("Doc", "d"), "attrs": {"ip": extn}}}
    authorize = request("a", "read", "d", context={"ip": extn})
    async with serving() as h:
        for path, body in (("/v1/events", upsert), ("/v1/authorize", authorize)):
            assert _extn_with_arg_and_args(body)
            status, answer, _ = await h.call("POST", path, body)
            assert status == 422, (path, answer)


async def test_a_token_partition_of_non_ascii_digits_is_refused() -> None:
    async with serving() as h:
        for partition in ("²", "٣"):
            token = {"at_least": {"rune.facts": {partition: 1}}}
            body = request("a", "read", "d", consistency=token)
            assert _non_ascii_digit_partition(body)
            status, answer, _ = await h.call("POST", "/v1/authorize", body)
            assert status == 422, (partition, answer)
