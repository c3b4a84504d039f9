"""``rune test``: policy test files (YAML) run against an in-process :class:`rune.Authorizer`.

A test file names a bundle (JSON file or source directory), facts (JSONL files and/or inline
events) and assertions: checks (``expect: allow|deny``) and reverse lookups (``expect:`` the
exact set of entities). Entity references are written ``Type::"id"`` or ``{type, id}``.
docs/testing.md documents the format. :func:`load_test_file` validates a file (raising
:class:`TestFileError`), :func:`run_test_file` builds the authorizer and evaluates every
assertion, never stopping at a failure.

Exit codes: 0 every assertion holds, 1 at least one fails, 2 a file is invalid (unreadable,
not YAML, wrong shape, a bundle or event that does not load).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import click
import orjson
import yaml

from rune.authorizer import Authorizer
from rune.errors import RuneError
from rune.ivm.values import EntityRef
from rune.policies.errors import PolicyError, RequestError
from rune.policies.refs import expand_refs, format_ref
from rune.policies.sources import BundleSource, BundleSourceError, read_bundle
from rune.policies.uids import is_entity_type, kind, parse_uid

__all__ = [
    "Assertion",
    "AssertionResult",
    "FileResult",
    "TestFile",
    "TestFileError",
    "load_test_file",
    "run_test_file",
    "test",
]

EXIT_PASS: Final = 0
EXIT_FAIL: Final = 1
EXIT_INVALID: Final = 2

_TOP: Final = frozenset({"bundle", "events", "facts", "tests", "name", "description"})
_KINDS: Final = ("check", "lookup_resources", "lookup_subjects")
_QUERY_FIELDS: Final = {
    "check": ({"principal", "action", "resource"}, {"context"}),
    "lookup_resources": ({"principal", "action", "type"}, {"context"}),
    "lookup_subjects": ({"resource", "action", "type"}, {"context"}),
}
_MAX_EXPLAINED: Final = 3
"""Lookup failures explain at most this many of the entities that differ."""

Kind = Literal["check", "lookup_resources", "lookup_subjects"]


class TestFileError(RuneError):
    """A test file is invalid: ``where`` is ``FILE[:LINE]`` and the path to the bad field."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, where: str) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Assertion:
    """One entry of ``tests``: a query and what it must give."""

    __test__ = False

    name: str
    kind: Kind
    query: dict[str, Any]
    """The query, entity references in JSON form."""
    expect: str | frozenset[EntityRef]
    """``allow``/``deny`` for a check, the exact set of entities for a lookup."""
    line: int


@dataclass(frozen=True, slots=True)
class TestFile:
    __test__ = False

    path: Path
    bundle: Path
    events: tuple[Path, ...]
    facts: tuple[dict[str, Any], ...]
    tests: tuple[Assertion, ...]


@dataclass(frozen=True, slots=True)
class AssertionResult:
    assertion: Assertion
    passed: bool
    got: str | frozenset[EntityRef]
    detail: str = ""
    """Why it failed: the explanation of the decision(s) concerned."""


@dataclass(slots=True)
class FileResult:
    path: Path
    results: list[AssertionResult] = field(default_factory=list)
    error: TestFileError | None = None

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)


# -- loading ----------------------------------------------------------------------------------


def _lines(text: str) -> list[int]:
    """Line (1-based) of each entry of the top-level ``tests`` sequence, when there is one."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if getattr(key, "value", None) == "tests" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def _paths(raw: object, base: Path, where: str) -> tuple[Path, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
        raise TestFileError(f"expected a path or a list of paths, got {kind(raw)}", where)
    out = []
    for i, item in enumerate(items):
        path = base / item
        if not path.exists():
            raise TestFileError(f"{item}: no such file or directory", f"{where}[{i}]")
        out.append(path)
    return tuple(out)


def _ref(value: object, where: str) -> EntityRef:
    try:
        return parse_uid(value, where, RequestError)
    except PolicyError as exc:
        raise TestFileError(
            f'{exc.message} (write Type::"id" or {{type: T, id: I}})', exc.location
        ) from None


def _assertion(raw: object, index: int, line: int) -> Assertion:
    where = f"tests[{index}]"
    if not isinstance(raw, dict):
        raise TestFileError(f"a test is a mapping, got {kind(raw)}", where)
    kinds = [k for k in _KINDS if k in raw]
    if len(kinds) != 1:
        raise TestFileError(f"a test has exactly one of {', '.join(_KINDS)}", where)
    what: Kind = kinds[0]  # type: ignore[assignment]
    extra = set(raw) - {"name", "expect", what}
    if extra:
        raise TestFileError(f"unknown field {sorted(extra)[0]!r}", f"{where}.{sorted(extra)[0]}")
    name = raw.get("name", f"{where} ({what})")
    if not isinstance(name, str):
        raise TestFileError(f"'name' must be a string, got {kind(name)}", f"{where}.name")
    query = raw[what]
    if not isinstance(query, dict):
        raise TestFileError(f"expected a mapping, got {kind(query)}", f"{where}.{what}")
    required, optional = _QUERY_FIELDS[what]
    missing = required - set(query)
    if missing:
        raise TestFileError(f"missing {sorted(missing)[0]!r}", f"{where}.{what}")
    unknown = set(query) - required - optional
    if unknown:
        first = sorted(unknown)[0]
        raise TestFileError(f"unknown field {first!r}", f"{where}.{what}.{first}")
    for key in ("principal", "action", "resource"):
        if key in query:
            _ref(query[key], f"{where}.{what}.{key}")
    if "type" in query and not is_entity_type(query["type"]):
        raise TestFileError(f"invalid entity type {query['type']!r}", f"{where}.{what}.type")
    if not isinstance(query.get("context", {}), dict):
        raise TestFileError("'context' must be a mapping", f"{where}.{what}.context")
    if "expect" not in raw:
        raise TestFileError("missing 'expect'", where)
    expect_raw = raw["expect"]
    expect: str | frozenset[EntityRef]
    if what == "check":
        if expect_raw not in ("allow", "deny"):
            raise TestFileError(f"expected allow or deny, got {expect_raw!r}", f"{where}.expect")
        expect = expect_raw
    else:
        if not isinstance(expect_raw, list):
            raise TestFileError(
                f"expected a list of entities, got {kind(expect_raw)}", f"{where}.expect"
            )
        expect = frozenset(_ref(e, f"{where}.expect[{i}]") for i, e in enumerate(expect_raw))
        wrong = [e for e in expect if e.type != query["type"]]
        if wrong:
            raise TestFileError(
                f"{format_ref(wrong[0])} is not of type {query['type']}", f"{where}.expect"
            )
    return Assertion(name, what, query, expect, line)


def load_test_file(path: Path) -> TestFile:
    """Read and validate a test file (raise :class:`TestFileError`); paths in it are
    relative to the file's directory."""
    label = str(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TestFileError(
            f"cannot read: {getattr(exc, 'strerror', None) or exc}", label
        ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark is not None else label
        problem = getattr(exc, "problem", None) or str(exc)
        raise TestFileError(f"not YAML: {problem}", where) from None
    try:
        return _test_file(path, expand_refs(doc), _lines(text))
    except TestFileError as exc:
        raise TestFileError(exc.message, f"{label}: {exc.where}") from None


def _test_file(path: Path, doc: object, lines: list[int]) -> TestFile:
    if not isinstance(doc, dict):
        raise TestFileError(f"a test file is a mapping, got {kind(doc)}", "(top)")
    extra = set(doc) - _TOP
    if extra:
        raise TestFileError(f"unknown field {sorted(extra)[0]!r}", sorted(extra)[0])
    base = path.parent
    if "bundle" not in doc:
        raise TestFileError("missing 'bundle' (a bundle JSON file or directory)", "bundle")
    if not isinstance(doc["bundle"], str):
        raise TestFileError(f"expected a path, got {kind(doc['bundle'])}", "bundle")
    bundle = base / doc["bundle"]
    if not bundle.exists():
        raise TestFileError(f"{doc['bundle']}: no such file or directory", "bundle")
    events = _paths(doc.get("events", []), base, "events")
    facts_raw = doc.get("facts", [])
    if not isinstance(facts_raw, list):
        raise TestFileError(f"expected a list of events, got {kind(facts_raw)}", "facts")
    facts = []
    for i, event in enumerate(facts_raw):
        if isinstance(event, list):  # shorthand: [rel, arg...] is an assert
            event = {"op": "assert", "fact": event}
        if not isinstance(event, dict):
            raise TestFileError(f"an event is a mapping, got {kind(event)}", f"facts[{i}]")
        facts.append(event)
    tests_raw = doc.get("tests")
    if not isinstance(tests_raw, list) or not tests_raw:
        raise TestFileError("'tests' must be a non-empty list", "tests")
    tests = tuple(
        _assertion(raw, i, lines[i] if i < len(lines) else 0) for i, raw in enumerate(tests_raw)
    )
    return TestFile(path, bundle, events, tuple(facts), tests)


# -- running ----------------------------------------------------------------------------------


def _authorizer(tf: TestFile) -> tuple[Authorizer, BundleSource]:
    from rune.cli.inputs import Loader, path_source

    label = str(tf.path)
    try:
        source = read_bundle(tf.bundle)
    except BundleSourceError as exc:
        raise TestFileError(str(exc), f"{label}: bundle") from None
    az = Authorizer()
    try:
        az.load_bundle(source.bundle)
    except PolicyError as exc:
        raise TestFileError(f"bundle rejected: {source.locate(exc)}", f"{label}: bundle") from None
    loader = Loader(skip_bad=False)
    for events in tf.events:
        try:
            loader.apply_file(az, path_source(events))
        except click.ClickException as exc:
            message = exc.message.removesuffix(" (--skip-bad skips bad lines)")
            raise TestFileError(message, f"{label}: events") from None
    if tf.facts:
        try:
            az.validate_events(list(tf.facts), prefix="facts")
            az.apply_batch(tf.facts)
        except PolicyError as exc:
            raise TestFileError(exc.message, f"{label}: {exc.location}") from None
    return az, source


def _request(query: Mapping[str, Any], principal: object, resource: object) -> dict[str, Any]:
    return {
        "id": "test",
        "principal": principal,
        "action": query["action"],
        "resource": resource,
        "context": query.get("context") or {},
        "explain": True,
    }


def _explain(az: Authorizer, source: BundleSource, request: dict[str, Any]) -> str:
    from rune.cli.render import render_explanation

    decision = az.check(request)
    text = render_explanation(az, request, decision)
    notes = []
    info = az.bundle.info if az.bundle is not None else {}
    for policy in decision.get("explanation", {}).get("cedar", {}).get("determining", []):
        pid = policy.get("id", "")
        pos = source.policy_position(pid)
        if pos:
            named = info[pid].annotation_id if pid in info else None
            notes.append(f"{pid}{f' @id({named!r})' if named else ''} is at {pos}")
    spans = [s for s in source.spans if s.part == "datalog"]
    if len(spans) > 1:
        ranges = ", ".join(f"{s.first_line}-{s.first_line + s.lines - 1} {s.label}" for s in spans)
        notes.append(f"bundle Datalog lines: {ranges}")
    return "\n".join([text, *notes])


def _lookup(az: Authorizer, a: Assertion) -> frozenset[EntityRef]:
    q = a.query
    found: set[EntityRef] = set()
    cursor: str | None = None
    while True:
        if a.kind == "lookup_resources":
            page = az.lookup_resources(
                q["principal"], q["action"], q["type"], cursor, 1000, q.get("context")
            )
        else:
            page = az.lookup_subjects(
                q["resource"], q["action"], q["type"], cursor, 1000, q.get("context")
            )
        found.update(page.items)
        cursor = page.cursor
        if cursor is None:
            return frozenset(found)


def _run_one(az: Authorizer, source: BundleSource, a: Assertion) -> AssertionResult:
    q = a.query
    if a.kind == "check":
        request = _request(q, q["principal"], q["resource"])
        decision = az.check(request)
        got = decision["decision"]
        if "error" in decision:
            return AssertionResult(a, False, got, f"the request could not be evaluated: "
                                   f"{decision['error']}")  # fmt: skip
        if got == a.expect:
            return AssertionResult(a, True, got)
        return AssertionResult(a, False, got, _explain(az, source, request))
    try:
        found = _lookup(az, a)
    except PolicyError as exc:
        return AssertionResult(a, False, frozenset(), f"the lookup failed: {exc}")
    if found == a.expect:
        return AssertionResult(a, True, found)
    assert isinstance(a.expect, frozenset)
    differ = sorted(a.expect ^ found)
    parts = []
    for ref in differ[:_MAX_EXPLAINED]:
        ref_json = {"type": ref.type, "id": ref.id}
        if a.kind == "lookup_resources":
            request = _request(q, q["principal"], ref_json)
        else:
            request = _request(q, ref_json, q["resource"])
        parts.append(_explain(az, source, request))
    if len(differ) > _MAX_EXPLAINED:
        parts.append(f"({len(differ) - _MAX_EXPLAINED} more not explained)")
    return AssertionResult(a, False, found, "\n".join(parts))


def run_test_file(path: Path) -> FileResult:
    """Load ``path`` and evaluate every assertion (an invalid file: ``error`` is set)."""
    result = FileResult(path)
    try:
        tf = load_test_file(path)
        az, source = _authorizer(tf)
    except TestFileError as exc:
        result.error = exc
        return result
    for a in tf.tests:
        result.results.append(_run_one(az, source, a))
    return result


# -- output -----------------------------------------------------------------------------------


def _show(value: str | frozenset[EntityRef]) -> str:
    if isinstance(value, str):
        return value
    return "[" + ", ".join(format_ref(r) for r in sorted(value)) + "]"


def _report(r: AssertionResult, label: str, verbose: bool) -> list[str]:
    a = r.assertion
    where = f"{label}:{a.line}" if a.line else label
    if r.passed:
        return [f"  ok    {a.name}"] if verbose else []
    lines = [f"  FAIL  {a.name}  ({where})"]
    lines.append(f"        expected: {_show(a.expect)}")
    lines.append(f"        got:      {_show(r.got)}")
    if isinstance(a.expect, frozenset) and isinstance(r.got, frozenset):
        if a.expect - r.got:
            lines.append(f"        missing:    {_show(a.expect - r.got)}")
        if r.got - a.expect:
            lines.append(f"        unexpected: {_show(r.got - a.expect)}")
    if r.detail:
        lines.extend(f"        | {line}".rstrip() for line in r.detail.splitlines())
    return lines


@click.command(
    short_help="Run policy test files (exit 0 pass, 1 fail, 2 invalid file).",
    help="""Run policy test files (YAML; the format is in docs/testing.md).

Each file names a bundle (JSON file or directory of *.dl/*.cedar sources), facts (JSONL
files and inline events) and tests: checks with `expect: allow|deny`, and
lookup_resources / lookup_subjects with `expect:` the exact list of entities. Entities are
written Type::"id" or {type: T, id: I}. Every failure is printed with what was expected, what
came out and the explanation of the decision(s) concerned.

\b
Examples:
  rune test policies/tests.yaml
  rune test tests/*.yaml --verbose

\b
Exit codes:
  0  every assertion holds
  1  at least one assertion fails
  2  a file is invalid (unreadable, not YAML, a wrong field, a bundle or event that does not
     load); reported as FILE: PLACE: message
""",
)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Also list the assertions that hold.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file instead of text.")
def test(files: Sequence[Path], verbose: bool, as_json: bool) -> None:
    passed = failed = invalid = 0
    for path in files:
        r = run_test_file(path)
        passed += len(r.results) - r.failed
        failed += r.failed
        invalid += r.error is not None
        if as_json:
            click.echo(orjson.dumps(_json(r)).decode())
            continue
        if r.error is not None:
            click.echo(f"{path}: INVALID")
            click.echo(f"  {r.error}", err=True)
            continue
        status = "ok" if not r.failed else f"{r.failed} failed"
        click.echo(f"{path}: {len(r.results)} tests, {status}")
        for line in (x for res in r.results for x in _report(res, str(path), verbose)):
            click.echo(line)
    summary = f"rune test: {passed} passed, {failed} failed"
    if invalid:
        summary += f", {invalid} invalid file(s)"
    click.echo(summary, err=True)
    raise click.exceptions.Exit(EXIT_INVALID if invalid else EXIT_FAIL if failed else EXIT_PASS)


def _json(r: FileResult) -> dict[str, Any]:
    return {
        "file": str(r.path),
        "error": str(r.error) if r.error is not None else None,
        "tests": [
            {
                "name": x.assertion.name,
                "line": x.assertion.line,
                "passed": x.passed,
                "expected": _show(x.assertion.expect),
                "got": _show(x.got),
                "detail": x.detail,
            }
            for x in r.results
        ],
    }
