"""``rune check``, ``rune explain``, ``rune benchmark`` through CliRunner."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

import rune.workloads.drive as workload
from rune.cli import main

ALICE = {"type": "User", "id": "alice"}
BOB = {"type": "User", "id": "bob"}
DAVE = {"type": "User", "id": "dave"}
READ = {"type": "Action", "id": "read"}
WRITE = {"type": "Action", "id": "write"}
DESIGN = {"type": "Doc", "id": "design"}
PRICING = {"type": "Doc", "id": "pricing"}


def _req(principal: dict[str, str], action: dict[str, str], resource: dict[str, str]) -> str:
    return orjson.dumps({"principal": principal, "action": action, "resource": resource}).decode()


def _run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin)


def _jsonl(path: Path, *lines: object) -> Path:
    path.write_bytes(
        b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
    )
    return path


# A custom bundle: Datalog allows readers, Cedar forbids anything on a locked document.
U = {"type": "User", "id": "u"}
D1 = {"type": "Doc", "id": "d1"}
D2 = {"type": "Doc", "id": "d2"}
CUSTOM = {
    "version": 4,
    "datalog": "allow(U, A, D) :- reader(U, D), read(A).\n",
    "cedar": '@id("locked") forbid(principal, action, resource) when { resource.locked };',
}


@pytest.fixture
def custom(tmp_path: Path) -> tuple[Path, Path]:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(orjson.dumps(CUSTOM))
    events = _jsonl(
        tmp_path / "facts.jsonl",
        {"op": "assert", "fact": ["read", READ]},
        {"op": "assert", "fact": ["reader", U, D1]},
        {"op": "assert", "fact": ["reader", U, D2]},
        {"op": "upsert", "entity": {"uid": D1, "attrs": {"locked": False}, "parents": []}},
        {"op": "upsert", "entity": {"uid": D2, "attrs": {"locked": True}, "parents": []}},
    )
    return bundle, events


# -- rune check ---------------------------------------------------------------------------


def test_check_allows_on_the_bundled_example_with_exit_0() -> None:
    result = _run("check", _req(ALICE, WRITE, DESIGN))  # eng editors inherit write on q3
    assert result.exit_code == 0, result.output
    decision = orjson.loads(result.stdout)
    assert decision["decision"] == "allow"
    assert decision["reasons"] == ["datalog:allow"]
    assert decision["id"] == "check"  # a request without id gets one
    assert decision["policy_version"] == 1


def test_check_denies_on_the_bundled_example_with_exit_2() -> None:
    result = _run("check", "--pretty", _req(BOB, WRITE, PRICING))  # legal hold forbids writes
    assert result.exit_code == 2, result.output
    assert result.stdout.startswith("{\n  ")  # --pretty indents
    decision = orjson.loads(result.stdout)
    assert decision["decision"] == "deny"
    assert decision["reasons"] == ["legal-hold"]  # the @id of policy1
    assert "error" not in decision


@pytest.mark.parametrize(
    ("resource", "action", "code", "reasons"),
    [
        (D1, READ, 0, ["datalog:allow"]),
        (D2, READ, 2, ["locked"]),  # the Cedar forbid on a locked document wins
        (D1, WRITE, 2, []),  # nothing allows writing
    ],
)
def test_check_on_a_custom_bundle(
    custom: tuple[Path, Path],
    tmp_path: Path,
    resource: dict[str, str],
    action: dict[str, str],
    code: int,
    reasons: list[str],
) -> None:
    bundle, events = custom
    request = tmp_path / "request.json"
    request.write_text(_req(U, action, resource))
    for source, stdin in ((f"@{request}", None), ("-", request.read_text())):
        result = _run(
            "check", "--bundle", str(bundle), "--events", str(events), source, stdin=stdin
        )
        assert result.exit_code == code, result.output
        decision = orjson.loads(result.stdout)
        assert decision["decision"] == ("allow" if code == 0 else "deny")
        assert decision["reasons"] == reasons
        assert decision["policy_version"] == 4


def test_check_with_a_custom_bundle_and_no_events_uses_none(custom: tuple[Path, Path]) -> None:
    bundle, events = custom
    without = _run("check", "--bundle", str(bundle), _req(U, READ, D1))
    assert without.exit_code == 2, without.output  # no facts: nothing allows it
    with_ = _run("check", "--bundle", str(bundle), "--events", str(events), _req(U, READ, D1))
    assert with_.exit_code == 0, with_.output


def test_events_from_several_files_apply_in_order(
    custom: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, events = custom
    retract = _jsonl(tmp_path / "more.jsonl", {"op": "retract", "fact": ["reader", U, D1]})
    args = ("check", "--bundle", str(bundle), "--events", str(events))
    assert _run(*args, _req(U, READ, D1)).exit_code == 0
    assert _run(*args, "--events", str(retract), _req(U, READ, D1)).exit_code == 2


def test_a_bad_event_line_is_named_by_file_and_line(
    custom: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, _ = custom
    events = _jsonl(
        tmp_path / "facts.jsonl",
        {"op": "assert", "fact": ["read", READ]},
        b"",  # blank lines count as lines but are not events
        {"op": "explode"},
        b"{not json",
        {"op": "assert", "fact": ["reader", U, D1]},  # after the bad lines
    )
    failed = _run("check", "--bundle", str(bundle), "--events", str(events), _req(U, READ, D1))
    assert failed.exit_code == 1, failed.output
    assert f"{events}:3: event rejected" in failed.stderr
    assert "--skip-bad" in failed.stderr
    assert failed.stdout == ""  # no decision on broken inputs

    skipped = _run(
        "check", "--bundle", str(bundle), "--events", str(events), "--skip-bad", _req(U, READ, D1)
    )
    assert skipped.exit_code == 0, skipped.output  # the fact after the bad lines was applied
    assert f"{events}:3: event rejected" in skipped.stderr
    assert f"{events}:4: invalid JSON" in skipped.stderr
    assert f"{events}:1:" not in skipped.stderr and f"{events}:5:" not in skipped.stderr


def test_an_event_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    events = _jsonl(tmp_path / "e.jsonl", [1, 2])
    result = _run("check", "--events", str(events), _req(ALICE, WRITE, DESIGN))
    assert result.exit_code == 1, result.output
    assert f"{events}:1: an event is a JSON object, got array" in result.stderr


def test_a_bad_event_in_a_large_batch_is_located(custom: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, _ = custom
    good = [
        {"op": "assert", "fact": ["reader", U, {"type": "Doc", "id": f"x{i}"}]} for i in range(7000)
    ]
    bad = {"op": "assert", "fact": ["reader", U]}  # wrong arity
    events = _jsonl(tmp_path / "big.jsonl", *good[:6000], bad, *good[6000:])
    result = _run("check", "--bundle", str(bundle), "--events", str(events), _req(U, READ, D1))
    assert result.exit_code == 1, result.output
    assert f"{events}:6001: event rejected" in result.stderr


def test_malformed_request_json_is_a_clear_error_with_exit_1(tmp_path: Path) -> None:
    result = _run("check", '{"principal": ')
    assert result.exit_code == 1, result.output
    assert "REQUEST: invalid JSON" in result.stderr
    assert result.stdout == ""

    not_object = _run("check", "[1, 2]")
    assert not_object.exit_code == 1
    assert "REQUEST: a request is a JSON object, got array" in not_object.stderr

    path = tmp_path / "req.json"
    path.write_text("{oops")
    from_file = _run("check", f"@{path}")
    assert from_file.exit_code == 1
    assert f"{path}: invalid JSON" in from_file.stderr

    missing = _run("check", f"@{tmp_path / 'absent.json'}")
    assert missing.exit_code == 1
    assert "absent.json: cannot read" in missing.stderr


def test_a_request_with_a_bad_field_exits_1_naming_the_field() -> None:
    bad = orjson.dumps({"id": "q", "principal": "alice", "action": WRITE, "resource": DESIGN})
    result = _run("check", bad.decode())
    assert result.exit_code == 1, result.output
    decision = orjson.loads(result.stdout)  # the decision is still printed
    assert decision["decision"] == "deny" and decision["id"] == "q"
    assert decision["error"].startswith("principal:")
    assert "could not be evaluated: principal:" in result.stderr


def test_usage_errors_exit_1_because_2_means_deny(tmp_path: Path) -> None:
    assert _run("check").exit_code == 1  # no REQUEST
    assert _run("check", "--no-such-option", "{}").exit_code == 1
    absent = _run("check", "--bundle", str(tmp_path / "absent.json"), "{}")
    assert absent.exit_code == 1
    assert "absent.json" in absent.stderr


def test_a_bad_bundle_is_a_clear_error(tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    bundle.write_bytes(orjson.dumps({"version": 1, "datalog": "p(X) :- .", "cedar": ""}))
    result = _run("check", "--bundle", str(bundle), _req(ALICE, READ, DESIGN))
    assert result.exit_code == 1
    assert f"{bundle}: bundle rejected: datalog 1:9" in result.stderr
    bundle.write_text("{")
    result = _run("check", "--bundle", str(bundle), _req(ALICE, READ, DESIGN))
    assert result.exit_code == 1
    assert f"{bundle}: invalid JSON" in result.stderr


# -- rune explain -------------------------------------------------------------------------


def test_explain_an_allow_shows_the_derivation_tree() -> None:
    result = _run("explain", _req(ALICE, WRITE, DESIGN))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("check: ALLOW")
    assert "allowed: Datalog derives allow; nothing forbids it" in out
    assert (
        'allow(User::"alice", Action::"write", Doc::"design")  <- rule at 20:1: '
        "allow(U, A, D) :- doc_folder(D, F), entity_in(U, G), folder_role(G, R, F), "
        "role_action(R, A)." in out
    )
    assert 'member(User::"alice", Group::"eng")  <- asserted fact' in out
    assert 'grant(Group::"eng", "editor", Folder::"specs")  <- asserted fact' in out
    assert "Datalog deny: does not hold" in out
    assert 'failed at suspended(User::"alice"): no matching tuple' in out
    assert "lines after 21 are RUNE's built-in rules" in out


def test_explain_a_cedar_forbid_shows_the_policy() -> None:
    result = _run("explain", _req(BOB, WRITE, PRICING))
    assert result.exit_code == 2, result.output
    out = result.stdout
    assert 'denied: Cedar forbid policy1 @id("legal-hold") applies' in out
    assert 'forbid policy1 @id("legal-hold") applies' in out
    assert 'forbid(principal, action in [Action::"write", Action::"share"], resource is Doc)' in out


def test_explain_a_cedar_permit_shows_the_policy() -> None:
    result = _run("explain", _req(BOB, WRITE, DESIGN))  # bob authored the draft
    assert result.exit_code == 0, result.output
    assert 'allowed: Cedar permit policy0 @id("authors-edit-drafts") applies' in result.stdout
    assert "Datalog allow: does not hold" in result.stdout


def test_explain_a_deny_where_nothing_applies_shows_the_failed_literals() -> None:
    result = _run("explain", _req(DAVE, READ, DESIGN))
    assert result.exit_code == 2, result.output
    out = result.stdout
    assert "denied: nothing allows it" in out
    assert 'not applicable: policy0 @id("authors-edit-drafts")' in out
    assert 'failed at folder_role(User::"dave", R, F): no matching tuple' in out
    assert 'failed at entity_in(User::"dave", G): no matching tuple' in out


def test_explain_on_a_bundle_without_cedar_or_deny(tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    bundle.write_bytes(orjson.dumps({"version": 1, "datalog": "allow(U, A, R) :- ok(U, A, R)."}))
    events = _jsonl(tmp_path / "e.jsonl", {"op": "assert", "fact": ["ok", U, READ, D1]})
    result = _run("explain", "--bundle", str(bundle), "--events", str(events), _req(U, READ, D1))
    assert result.exit_code == 0, result.output
    assert "Cedar: not evaluated" in result.stdout
    assert "Datalog deny: not defined by the bundle" in result.stdout
    assert "rule at 1:1: allow(U, A, R) :- ok(U, A, R)." in result.stdout


def test_explain_json_prints_the_raw_explanation() -> None:
    result = _run("explain", "--json", _req(ALICE, WRITE, DESIGN))
    assert result.exit_code == 0, result.output
    decision = orjson.loads(result.stdout)
    expl = decision["explanation"]
    assert expl["datalog"]["allow"]["holds"] is True
    assert expl["datalog"]["allow"]["explanation"]["line"] == 20
    assert expl["cedar"]["not_applicable"] == ["policy0", "policy1", "policy2"]


def test_explain_a_bad_request_exits_1() -> None:
    result = _run("explain", orjson.dumps({"principal": 3}).decode())
    assert result.exit_code == 1, result.output
    assert "could not be evaluated: " in result.stdout


# -- rune benchmark -----------------------------------------------------------------------


def _figures(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    figures: dict[str, Any] = orjson.loads(result.stdout)
    return figures


def test_benchmark_prints_percentiles_and_throughput() -> None:
    result = _run(
        "benchmark", "--requests", "40", "--warm-up", "5", "--threads", "2", "--scale", "0.001"
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    found = {
        q: float(m.group(1))
        for q in ("p50", "p95", "p99")
        if (m := re.search(rf"{q} ([0-9.]+) us", out))
    }
    assert set(found) == {"p50", "p95", "p99"}
    assert 0 < found["p50"] <= found["p95"] <= found["p99"]
    throughput = re.search(r"throughput\s+([0-9,]+) decisions/s", out)
    assert throughput is not None and int(throughput.group(1).replace(",", "")) > 0
    assert "40 requests after 5 warm-up, 2 threads" in out
    assert re.search(r"cache\s+[0-9.]+ % of measured decisions were hits", out)


def test_benchmark_json_figures_on_the_drive_workload() -> None:
    f = _figures(
        _run("benchmark", "--requests", "30", "--warm-up", "0", "--scale", "0.001", "--json")
    )
    assert f["measured"] == f["requests"] == 30
    assert f["decisions_per_s"] > 0
    assert 0 < f["p50_us"] <= f["p95_us"] <= f["p99_us"] <= f["max_us"]
    assert f["workload"]["drive"] == {"scale": 0.001, "seed": 1, "cedar": True}
    assert f["errors"] == 0
    assert 0 < f["allow_share"] < 1  # the drive requests mix allowed and denied ones


def test_benchmark_cache_hits_and_no_cache() -> None:
    # 3 distinct requests, all decided during warm-up: every measured one is a cache hit
    args = ("benchmark", "--requests", "12", "--warm-up", "3", "--distinct", "3", "--json")
    cached = _figures(_run(*args, "--scale", "0.001", "--no-cedar"))
    assert cached["cache_hit_share"] == 1.0
    uncached = _figures(_run(*args, "--scale", "0.001", "--no-cedar", "--no-cache"))
    assert uncached["cache_hit_share"] == 0.0
    assert uncached["cache"] is False


def test_benchmark_on_files(custom: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, events = custom
    requests = _jsonl(
        tmp_path / "requests.jsonl",
        {"id": "a", "principal": U, "action": READ, "resource": D1, "context": {}},
        {"id": "b", "principal": U, "action": READ, "resource": D2, "context": {}},
    )
    f = _figures(
        _run(
            "benchmark", "--bundle", str(bundle), "--events", str(events),
            "--requests-file", str(requests), "--requests", "10", "--warm-up", "2", "--json",
        )
    )  # fmt: skip
    assert f["distinct"] == 2
    assert f["allow_share"] == 0.5  # a is allowed, b forbidden, cycled
    assert f["cache_hit_share"] == 1.0
    assert f["workload"]["events_applied"] == 5


def test_benchmark_rejects_drive_options_with_files(custom: tuple[Path, Path]) -> None:
    bundle, _ = custom
    result = _run("benchmark", "--bundle", str(bundle), "--scale", "0.1")
    assert result.exit_code == 1
    assert "--scale" in result.stderr
    result = _run("benchmark", "--bundle", str(bundle))
    assert result.exit_code == 1
    assert "--bundle needs --requests-file" in result.stderr


# -- help and the workload module ---------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "needles"),
    [
        ("check", ["Exit codes", "2  deny", "rune check --bundle", "@FILE"]),
        ("explain", ["Exit codes", "derivation tree", "rune explain", "--json"]),
        ("benchmark", ["GIL", "concurrent clients", "rune benchmark --requests", "--no-cache"]),
    ],
)
def test_help_reads_well(command: str, needles: list[str]) -> None:
    result = _run(command, "--help")
    assert result.exit_code == 0
    for needle in needles:
        assert needle in result.stdout, needle


def test_perf_drive_reexports_the_package_workload() -> None:
    path = Path(__file__).resolve().parents[2] / "perf" / "drive.py"
    spec = importlib.util.spec_from_file_location("perf_drive", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in workload.__all__:
        assert getattr(module, name) is getattr(workload, name), name
