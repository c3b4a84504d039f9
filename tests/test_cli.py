"""The ``rune`` command: the README's first command must keep working on the bundled example."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from rune.cli import main


def test_run_on_the_bundled_example_answers_every_request() -> None:
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [d["id"] for d in lines] == [f"r-{i}" for i in range(1, 8)]
    by_id = {d["id"]: d for d in lines}
    assert by_id["r-1"]["decision"] == "allow"  # eng editors inherit write on specs/q3
    assert by_id["r-3"]["decision"] == "deny"  # legal hold forbids writes
    assert by_id["r-5"]["decision"] == "deny"  # dave has no grant
    assert "error" in by_id["r-7"] and by_id["r-7"]["decision"] == "deny"
    assert all(d["policy_version"] == 1 for d in lines)


def test_run_with_files_reports_bad_lines_and_keeps_going(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(
        orjson.dumps({"version": 3, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""})
    )
    events = tmp_path / "events.jsonl"
    user = {"type": "User", "id": "u"}
    act = {"type": "Action", "id": "a"}
    res = {"type": "Doc", "id": "d"}
    events.write_bytes(
        orjson.dumps({"op": "assert", "fact": ["ok", user, act, res]})
        + b"\n"
        + b"{not json\n"
        + orjson.dumps({"op": "explode"})
        + b"\n"
    )
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(
        orjson.dumps({"id": "q", "principal": user, "action": act, "resource": res, "context": {}})
        + b"\n"
    )
    result = CliRunner().invoke(
        main, ["run", "--bundle", str(bundle), "--events", str(events), "--requests", str(requests)]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout.splitlines()[0])["decision"] == "allow"
    assert "events.jsonl:2: invalid JSON" in result.stderr
    assert "events.jsonl:3: unknown op 'explode'" in result.stderr
    assert "1 events applied, 0 rejected, 2 undecodable" in result.stderr


def test_invalid_bundle_is_a_clear_error(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(orjson.dumps({"version": 1, "datalog": "p(X) :- .", "cedar": ""}))
    result = CliRunner().invoke(main, ["run", "--bundle", str(bundle)])
    assert result.exit_code != 0
    assert "bundle rejected" in result.output and "1:9" in result.output


def test_run_applies_repeated_events_in_order_and_a_bundle_alone_loads_no_example_facts(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(
        orjson.dumps({"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""})
    )
    user, act = {"type": "User", "id": "u"}, {"type": "Action", "id": "a"}
    doc = [{"type": "Doc", "id": f"d{i}"} for i in range(3)]
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(
        orjson.dumps({"op": "assert", "fact": ["ok", user, act, doc[0]]})
        + b"\n"
        + orjson.dumps({"op": "assert", "fact": ["ok", user, act, doc[1]]})
        + b"\n"
    )
    second.write_bytes(  # applied after the first file: d1 is retracted again
        orjson.dumps({"op": "retract", "fact": ["ok", user, act, doc[1]]})
        + b"\n"
        + orjson.dumps({"op": "assert", "fact": ["ok", user, act, doc[2]]})
        + b"\n"
    )
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(
        b"".join(
            orjson.dumps({"id": f"q{i}", "principal": user, "action": act, "resource": doc[i]})
            + b"\n"
            for i in range(3)
        )
    )
    args = ["run", "--bundle", str(bundle), "--requests", str(requests)]
    both = CliRunner().invoke(main, [*args, "--events", str(first), "--events", str(second)])
    assert both.exit_code == 0, both.output
    got = {d["id"]: d["decision"] for d in map(orjson.loads, both.stdout.splitlines())}
    assert got == {"q0": "allow", "q1": "deny", "q2": "allow"}
    assert "4 events applied" in both.stderr

    alone = CliRunner().invoke(main, args)  # the bundle only: no events at all
    assert alone.exit_code == 0, alone.output
    assert "0 events applied" in alone.stderr
    assert {orjson.loads(line)["decision"] for line in alone.stdout.splitlines()} == {"deny"}


def test_serve_preloads_repeated_events_in_order_and_nothing_with_a_bundle_alone(
    tmp_path: Path,
) -> None:
    from rune.cli.serve import _open_log
    from rune.config import load_settings
    from rune.connectors.embedded import EmbeddedLog

    bundle = tmp_path / "bundle.json"
    bundle.write_bytes(orjson.dumps({"version": 1, "datalog": "", "cedar": ""}))
    files = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for i, path in enumerate(files):
        fact = {"op": "assert", "fact": ["f", {"type": "T", "id": str(i)}]}
        path.write_bytes(orjson.dumps(fact) + b"\n")
    settings = load_settings(None, {"kafka": {"partitions": 1}})
    log = _open_log(settings, (bundle, tuple(files)))
    assert isinstance(log, EmbeddedLog)
    origins = [r.origin for r in log.records(settings.topics.facts)]
    assert origins == [f"{files[0]}:1", f"{files[1]}:1"]
    alone = _open_log(settings, (bundle, ()))
    assert isinstance(alone, EmbeddedLog) and alone.records(settings.topics.facts) == []
    example = _open_log(settings, (None, ()))
    assert isinstance(example, EmbeddedLog) and example.records(settings.topics.facts)
