"""``rune test`` (rune/cli/policytest.py): policy test files through CliRunner."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
from click.testing import CliRunner, Result

from rune.cli import main

TUTORIAL = Path(__file__).resolve().parents[2] / "rune" / "examples" / "tutorial"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, ["test", *args])


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "tutorial"
    shutil.copytree(TUTORIAL, dst)
    return dst


def test_the_tutorial_passes() -> None:
    r = _run("--verbose", str(TUTORIAL / "tests.yaml"))
    assert r.exit_code == 0, r.output
    assert "7 tests, ok" in r.stdout
    assert "rune test: 7 passed, 0 failed" in r.stderr


def test_failures_show_expected_got_and_the_explanation(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "t.yaml").write_text(
        """\
bundle: policies
events: [facts.jsonl]
tests:
  - name: alice writes design
    check: {principal: User::"alice", action: Action::"write", resource: Doc::"design"}
    expect: allow
  - name: bob reads design
    check:
      principal: {type: User, id: bob}
      action: Action::"read"
      resource: Doc::"design"
      context: {}
    expect: deny
  - name: what alice reads
    lookup_resources: {principal: User::"alice", action: Action::"read", type: Doc}
    expect: [Doc::"design", Doc::"pricing"]
  - name: bob writes old-plan
    check: {principal: User::"bob", action: Action::"write", resource: Doc::"old-plan"}
    expect: allow
"""
    )
    r = _run(str(d / "t.yaml"))
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert "4 tests, 3 failed" in out
    assert f"FAIL  alice writes design  ({d}/t.yaml:4)" in out
    assert "expected: allow\n        got:      deny" in out
    assert "denied: nothing allows it" in out
    assert 'allow(User::"alice", Action::"write", Doc::"design") does not hold' in out
    assert "bundle Datalog lines: 1-9" in out and "docs.dl" in out
    assert "bob reads design" not in out  # passed, not verbose
    assert 'missing:    [Doc::"pricing"]' in out
    assert 'expected: [Doc::"design", Doc::"pricing"]\n        got:      [Doc::"design"]' in out
    # a forbid that overrides a permit names both, and where the policies are
    assert "denied: Cedar forbid" in out
    assert f"policy1 @id('archived-is-read-only') is at {d}/policies/docs.cedar:5:1" in out
    assert "rune test: 1 passed, 3 failed" in r.stderr


def test_json_output(tmp_path: Path) -> None:
    r = _run("--json", str(TUTORIAL / "tests.yaml"))
    assert r.exit_code == 0
    doc = orjson.loads(r.stdout)
    assert doc["error"] is None and len(doc["tests"]) == 7
    assert all(t["passed"] for t in doc["tests"])


def _invalid(tmp_path: Path, text: str, name: str = "t.yaml") -> str:
    d = tmp_path if (tmp_path / "policies").exists() else _copy(tmp_path)
    (d / name).write_text(text)
    r = _run(str(d / name))
    assert r.exit_code == 2, r.output
    assert f"{d / name}: INVALID" in r.stdout
    return r.stderr.replace(str(d) + "/", "")


def test_invalid_files_exit_2_naming_the_place(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    check = 'check: {principal: User::"a", action: Action::"read", resource: Doc::"d"}'
    assert "t.yaml:4:3: not YAML" in _invalid(
        d, f"bundle: policies\ntests:\n  - {check}\n  expect: [\n"
    )
    assert "t.yaml: tests[0]: missing 'expect'" in _invalid(
        d, f"bundle: policies\ntests:\n  - {check}\n"
    )
    assert "t.yaml: tests[0].expect: expected allow or deny, got 'permit'" in _invalid(
        d, f"bundle: policies\ntests:\n  - {check}\n    expect: permit\n"
    )
    bad_ref = check.replace('User::"a"', "alice")
    message = _invalid(d, f"bundle: policies\ntests:\n  - {bad_ref}\n    expect: allow\n")
    assert "t.yaml: tests[0].check.principal: expected an entity reference" in message
    assert "t.yaml: colour: unknown field 'colour'" in _invalid(
        d, f"bundle: policies\ncolour: red\ntests:\n  - {check}\n    expect: allow\n"
    )
    assert "t.yaml: bundle: nope/: no such file" in _invalid(
        d, f"bundle: nope/\ntests:\n  - {check}\n    expect: allow\n"
    )
    lookup = 'lookup_resources: {principal: User::"a", action: Action::"read", type: Doc}'
    assert 'tests[0].expect: User::"x" is not of type Doc' in _invalid(
        d, f'bundle: policies\ntests:\n  - {lookup}\n    expect: [User::"x"]\n'
    )
    # a bundle error names the source file and line
    (d / "policies" / "zz.dl").write_text("ok(X).\nbad(X) :- member(X, Y), not ok(Z).\n")
    message = _invalid(d, f"bundle: policies\ntests:\n  - {check}\n    expect: allow\n")
    assert "bundle rejected: policies/zz.dl:" in message
    (d / "policies" / "zz.dl").unlink()
    # a bad event line names its file and line; an inline event its index
    (d / "more.jsonl").write_text('{"op": "assert", "fact": ["ok", 1]}\n{"op": "nope"}\n')
    message = _invalid(
        d, f"bundle: policies\nevents: more.jsonl\ntests:\n  - {check}\n    expect: allow\n"
    )
    assert "more.jsonl:2: event rejected: op: 'op' must be one of" in message
    assert "skip" not in message
    message = _invalid(
        d,
        f'bundle: policies\nfacts:\n  - [member, User::"a", 3.5]\ntests:\n  - {check}\n'
        "    expect: allow\n",
    )
    assert "t.yaml: facts[0].fact[2]:" in message


def test_several_files_the_worst_exit_code_wins(tmp_path: Path) -> None:
    d = _copy(tmp_path)
    (d / "bad.yaml").write_text("bundle: policies\ntests: []\n")
    r = _run(str(d / "tests.yaml"), str(d / "bad.yaml"))
    assert r.exit_code == 2
    assert "rune test: 7 passed, 0 failed, 1 invalid file(s)" in r.stderr
    assert "'tests' must be a non-empty list" in r.stderr


def test_the_documented_example_passes(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    d = _copy(tmp_path)
    (d / "doc.yaml").write_text(example)
    r = _run("--verbose", str(d / "doc.yaml"))
    assert r.exit_code == 0, r.output
    assert "4 tests, ok" in r.stdout
