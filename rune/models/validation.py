"""Validation files: SpiceDB's (``zed validate``), OpenFGA's store tests (``.fga.yaml``) and
OpenFGA's consolidated test suite, run on a fresh engine per file (or stage).

- SpiceDB: ``schema`` (or ``schemaFile``), ``relationships`` (one per line, ``//`` comments),
  ``assertions`` with ``assertTrue`` / ``assertFalse`` (``assertCaveated`` is refused: caveats
  are not supported), optional ``validation``: ``resource#permission`` -> the expected
  subjects ``"[user:anne] is <...>"`` (the subjects in brackets are compared as a set,
  ``[user:* - {user:bob}]`` included; the ``<...>`` relationships are not compared).
- OpenFGA store tests: ``model`` or ``model_file``, ``tuples`` / ``tuple_file`` /
  ``tuple_files``, ``tests`` with ``tuples``, ``check`` (``user``, ``object``, ``assertions``:
  relation -> bool), ``list_objects`` (``user``, ``type``, ``assertions``: relation -> objects)
  and ``list_users`` (``object``, ``user_filter`` [{type, relation?}], ``assertions``: relation
  -> {users}).
- OpenFGA consolidated tests: ``tests`` of ``stages`` (``model``, ``tuples``,
  ``checkAssertions``, ``listObjectsAssertions``, ``listUsersAssertions``, each with
  ``contextualTuples`` and ``expectation`` or ``errorCode``). Tuples accumulate over stages.

A list of users that holds ``type:*`` is compared without the plain ``type:`` subjects (the
wildcard implies them): OpenFGA lists them, RUNE's exact relations may not.

:func:`run_file` returns a :class:`Report`; :class:`ValidationFileError` is an invalid file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from rune.errors import RuneError
from rune.ivm import Engine
from rune.models.check import MAX_PAGE, LookupPage, ZanzibarView
from rune.models.compile import RELATIONSHIP, CompiledModel, compile_model
from rune.models.errors import ModelError, RelationshipError
from rune.models.ir import Model
from rune.models.openfga import parse_model
from rune.models.spicedb import parse_schema
from rune.models.tuples import Relationship, parse_relationship, parse_tuple

__all__ = ["Failure", "Report", "ValidationFileError", "check_relationship", "run_file", "run_text"]


class ValidationFileError(ModelError):
    """The file is not a valid validation file (syntax, schema, relationships)."""


@dataclass(frozen=True, slots=True)
class Failure:
    where: str
    """The assertion, e.g. ``assertTrue: document:1#view@user:anne``."""
    detail: str
    """What RUNE found: the path that grants, or the step that is missing."""


@dataclass(slots=True)
class Report:
    path: str
    passed: int = 0
    failures: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def check_relationship(model: Model, rel: Relationship) -> str | None:
    """Why ``rel`` cannot be written under ``model`` (None when it can)."""
    t = model.types.get(rel.object_type)
    if t is None:
        return f"unknown object type {rel.object_type!r}"
    r = t.relations.get(rel.relation)
    if r is None:
        return f"{rel.object_type!r} has no relation {rel.relation!r}"
    s = rel.subject
    if s.type not in model.types:
        return f"unknown subject type {s.type!r}"
    for st in r.types:
        if st.type != s.type:
            continue
        if s.id == "*" and st.wildcard:
            return None
        if s.id != "*" and not st.wildcard and (st.relation or "") == s.relation:
            return None
    allowed = ", ".join(map(str, r.types)) or "none (a permission)"
    return f"{rel.object_type}#{rel.relation} does not allow subject {s} (allowed: {allowed})"


class _Store:
    """A compiled model over an engine, with contextual relationships."""

    def __init__(self, compiled: CompiledModel, rels: Iterable[Relationship]) -> None:
        self.compiled = compiled
        self.engine = Engine(compiled.datalog)
        self.add(rels)
        self.view = ZanzibarView(self.engine)

    def add(self, rels: Iterable[Relationship]) -> None:
        rows = [tuple(r.fact()[1:]) for r in rels]
        if rows:
            self.engine.update(insert={RELATIONSHIP: rows})

    def with_context(self, rels: Sequence[Relationship], fn: Callable[[], Any]) -> Any:
        new = [
            tuple(r.fact()[1:])
            for r in rels
            if not self.engine.contains(RELATIONSHIP, tuple(r.fact()[1:]))
        ]
        new = list(dict.fromkeys(new))
        if new:
            self.engine.update(insert={RELATIONSHIP: new})
        try:
            return fn()
        finally:
            if new:
                self.engine.update(delete={RELATIONSHIP: new})


def _compile(model: Model, where: str) -> CompiledModel:
    compiled = compile_model(model)
    try:
        Engine(compiled.datalog)
    except RuneError as exc:
        raise ValidationFileError(
            f"{where}: the model compiles to an invalid program: {exc}"
        ) from None
    return compiled


def _load_yaml(text: str, path: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationFileError(f"{path}: invalid YAML: {exc}") from None


def run_file(path: Path) -> Report:
    """Run one validation file (the format is recognised by its keys)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFileError(f"{path}: {exc.strerror or exc}") from None
    return run_text(text, str(path), path.parent)


def run_text(text: str, name: str = "<file>", base: Path | None = None) -> Report:
    doc = _load_yaml(text, name)
    if not isinstance(doc, Mapping):
        raise ValidationFileError(f"{name}: a validation file is a YAML mapping")
    base = base or Path.cwd()
    if "schema" in doc or "schemaFile" in doc:
        return _spicedb(doc, name, base)
    tests = doc.get("tests")
    if isinstance(tests, list) and tests and isinstance(tests[0], Mapping) and "stages" in tests[0]:
        return _consolidated(doc, name)
    if "model" in doc or "model_file" in doc:
        return _fga_store(doc, name, base)
    raise ValidationFileError(
        f"{name}: neither a SpiceDB validation file (schema) nor an OpenFGA test file (model)"
    )


# -- SpiceDB --------------------------------------------------------------------------------


def _spicedb(doc: Mapping[str, Any], name: str, base: Path) -> Report:
    report = Report(name)
    extra = set(doc) - {"schema", "schemaFile", "relationships", "assertions", "validation"}
    if extra:
        raise ValidationFileError(f"{name}: unknown key {sorted(extra)[0]!r}")
    model, compiled = _spicedb_schema(doc, name, base)
    store = _Store(compiled, _spicedb_relationships(doc, name, model))
    _spicedb_assertions(doc, name, store.view, report)
    _spicedb_validation(doc, name, store, compiled, report)
    return report


def _spicedb_schema(doc: Mapping[str, Any], name: str, base: Path) -> tuple[Model, CompiledModel]:
    schema = doc.get("schema")
    if schema is None:
        schema = _read(base / str(doc["schemaFile"]), name)
    if not isinstance(schema, str):
        raise ValidationFileError(f"{name}: schema: expected text")
    try:
        model = parse_schema(schema)
        return model, _compile(model, f"{name}: schema")
    except ModelError as exc:
        raise ValidationFileError(f"{name}: schema: {exc}") from None


def _spicedb_relationships(doc: Mapping[str, Any], name: str, model: Model) -> list[Relationship]:
    rels = []
    text = doc.get("relationships") or ""
    if not isinstance(text, str):
        raise ValidationFileError(f"{name}: relationships: expected text, one per line")
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        try:
            rel = parse_relationship(line, f"relationships line {n}")
        except RelationshipError as exc:
            raise ValidationFileError(f"{name}: {exc}") from None
        why = check_relationship(model, rel)
        if why:
            raise ValidationFileError(f"{name}: relationships line {n}: {rel}: {why}")
        rels.append(rel)
    return rels


def _spicedb_assertions(
    doc: Mapping[str, Any], name: str, view: ZanzibarView, report: Report
) -> None:
    assertions = doc.get("assertions") or {}
    if not isinstance(assertions, Mapping):
        raise ValidationFileError(f"{name}: assertions: expected a mapping")
    bad = set(assertions) - {"assertTrue", "assertFalse", "assertCaveated"}
    if bad:
        raise ValidationFileError(f"{name}: assertions: unknown key {sorted(bad)[0]!r}")
    if assertions.get("assertCaveated"):
        raise ValidationFileError(f"{name}: assertCaveated: caveats are not supported")
    for key, expected in (("assertTrue", True), ("assertFalse", False)):
        for item in assertions.get(key) or []:
            text = str(item).strip()
            if " with " in text:
                raise ValidationFileError(f"{name}: {key}: caveat context is not supported: {text}")
            try:
                rel = parse_relationship(text, key)
                res, perm, subj = (
                    f"{rel.object_type}:{rel.object_id}",
                    rel.relation,
                    str(rel.subject),
                )
                got = view.check(res, perm, subj)
            except RelationshipError as exc:
                raise ValidationFileError(f"{name}: {exc}") from None
            if got == expected:
                report.passed += 1
            else:
                report.failures.append(Failure(f"{key}: {text}", view.explain(res, perm, subj)))


def _spicedb_validation(
    doc: Mapping[str, Any], name: str, store: _Store, compiled: CompiledModel, report: Report
) -> None:
    validation = doc.get("validation") or {}
    if not isinstance(validation, Mapping):
        raise ValidationFileError(f"{name}: validation: expected a mapping")
    for key, lines in validation.items():
        m = re.fullmatch(r"\s*([^#\s]+)#(\S+)\s*", str(key))
        if m is None:
            raise ValidationFileError(
                f"{name}: validation: expected resource#permission, got {key!r}"
            )
        resource, perm = m.group(1), m.group(2)
        expected_set = set()
        for line in lines or []:
            sm = re.match(r"\s*\[(.*?)\]\s*(is\b.*)?$", str(line))
            if sm is None:
                raise ValidationFileError(f"{name}: validation {key}: cannot read {line!r}")
            expected_set.add(_norm_subject(sm.group(1)))
        try:
            got_set = _subjects(store, compiled, resource, perm)
        except RelationshipError as exc:
            raise ValidationFileError(f"{name}: validation {key}: {exc}") from None
        if got_set == expected_set:
            report.passed += 1
            continue
        detail = []
        if missing := sorted(expected_set - got_set):
            detail.append("expected but not found: " + ", ".join(missing))
        if extra := sorted(got_set - expected_set):
            detail.append("found but not expected: " + ", ".join(extra))
        report.failures.append(Failure(f"validation: {key}", "\n".join(detail)))


def _norm_subject(text: str) -> str:
    text = re.sub(r"\[[^\]]*\]$", "", text.strip())  # a caveat marker
    m = re.fullmatch(r"(\S+:\*)\s*-\s*\{(.*)\}", text)
    if m:
        excluded = sorted(s.strip() for s in m.group(2).split(",") if s.strip())
        return f"{m.group(1)} - {{{', '.join(excluded)}}}"
    return text


def _subjects(store: _Store, compiled: CompiledModel, resource: str, perm: str) -> set[str]:
    """Every subject of ``resource#perm``, SpiceDB's way: wildcards with their exclusions."""
    view = store.view
    otype, oid = resource.split(":", 1)
    if (otype, perm) not in view.relations:
        raise RelationshipError(f"{otype!r} has no relation or permission {perm!r}")
    dl, exact = view.relations[(otype, perm)]
    rows = list(store.view.rows(dl, (oid, None, None, None)))
    out: set[str] = set()
    wild_types = {str(r[1]) for r in rows if r[2] == "*" and r[3] == ""}
    for _, t, i, r in rows:
        if exact and r == "" and t in wild_types and i != "*":
            continue
        if i == "*":
            continue
        out.add(f"{t}:{i}" + (f"#{r}" if r else ""))
    for t in wild_types:
        excluded: list[str] = []
        if exact:
            for _, i in store.engine.lookup("zanzibar_subject", (t, None)):
                if i != "*" and not store.engine.contains(dl, (oid, t, i, "")):
                    excluded.append(f"{t}:{i}")
        out.add(f"{t}:* - {{{', '.join(sorted(excluded))}}}" if excluded else f"{t}:*")
    return out


def _read(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFileError(f"{name}: {path}: {exc.strerror or exc}") from None


# -- OpenFGA --------------------------------------------------------------------------------


def _tuples(items: object, where: str, model: Model | None) -> list[Relationship]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValidationFileError(f"{where}: expected a list of tuples")
    out = []
    for i, item in enumerate(items):
        try:
            rel = parse_tuple(item, f"{where}[{i}]")
        except RelationshipError as exc:
            raise ValidationFileError(str(exc)) from None
        if model is not None:
            why = check_relationship(model, rel)
            if why:
                raise ValidationFileError(f"{where}[{i}]: {rel}: {why}")
        out.append(rel)
    return out


def _users_equal(got: Iterable[str], expected: Iterable[str]) -> bool:
    def norm(items: Iterable[str]) -> set[str]:
        s = set(items)
        wild = {x.split(":", 1)[0] for x in s if x.endswith(":*")}
        return {x for x in s if x.endswith(":*") or "#" in x or x.split(":", 1)[0] not in wild}

    return norm(got) == norm(expected)


def _fga_store(doc: Mapping[str, Any], name: str, base: Path) -> Report:
    report = Report(name)
    src = doc.get("model")
    if src is None:
        src = _read(base / str(doc["model_file"]), name)
    try:
        model = parse_model(src)
        compiled = _compile(model, f"{name}: model")
    except ModelError as exc:
        raise ValidationFileError(f"{name}: model: {exc}") from None
    tuples = _tuples(doc.get("tuples"), f"{name}: tuples", model)
    files = list(doc.get("tuple_files") or [])
    if doc.get("tuple_file"):
        files.append(doc["tuple_file"])
    for f in files:
        tuples += _tuples(_load_yaml(_read(base / str(f), name), str(f)), str(f), model)
    for ti, test in enumerate(doc.get("tests") or []):
        tname = str(test.get("name", f"tests[{ti}]"))
        extra = _tuples(test.get("tuples"), f"{name}: {tname}: tuples", model)
        store = _Store(compiled, [*tuples, *extra])
        view = store.view
        for c in test.get("check") or []:
            if c.get("context"):
                report.skipped.append(f"{tname}: check with context (conditions unsupported)")
                continue
            user, obj = str(c["user"]), str(c["object"])
            for rel, expected in (c.get("assertions") or {}).items():
                where = f"{tname}: check {obj}#{rel}@{user}"
                try:
                    got = view.check(obj, str(rel), user)
                except RelationshipError as exc:
                    report.failures.append(Failure(where, f"error: {exc}"))
                    continue
                if got == bool(expected):
                    report.passed += 1
                else:
                    report.failures.append(
                        Failure(
                            f"{where} expected {bool(expected)}", view.explain(obj, str(rel), user)
                        )
                    )
        for lo in test.get("list_objects") or []:
            user, otype = str(lo["user"]), str(lo["type"])
            for rel, expected in (lo.get("assertions") or {}).items():
                where = f"{tname}: list_objects {otype}#{rel}@{user}"
                try:
                    got_l = _objects(view, otype, str(rel), user)
                except RelationshipError as exc:
                    report.failures.append(Failure(where, f"error: {exc}"))
                    continue
                _compare(report, where, got_l, expected or [])
        for lu in test.get("list_users") or []:
            obj = str(lu["object"])
            filters = lu.get("user_filter") or []
            for rel, expected in (lu.get("assertions") or {}).items():
                where = f"{tname}: list_users {obj}#{rel}"
                try:
                    pairs = [(str(f.get("type")), str(f.get("relation") or "")) for f in filters]
                    got_u = _users(view, obj, str(rel), pairs)
                except RelationshipError as exc:
                    report.failures.append(Failure(where, f"error: {exc}"))
                    continue
                users = (
                    (expected or {}).get("users") or []
                    if isinstance(expected, Mapping)
                    else expected or []
                )
                if _users_equal(got_u, users):
                    report.passed += 1
                else:
                    report.failures.append(
                        Failure(where, f"expected {sorted(users)}, found {sorted(got_u)}")
                    )
    return report


def _all(page: Callable[[str | None], Any]) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        p = page(cursor)
        out += p.items
        if p.cursor is None:
            return out
        cursor = p.cursor


def _compare(report: Report, where: str, got: list[str], expected: Sequence[str]) -> None:
    if sorted(set(got)) == sorted(set(expected)):
        report.passed += 1
    else:
        report.failures.append(Failure(where, f"expected {sorted(expected)}, found {sorted(got)}"))


def _consolidated(doc: Mapping[str, Any], name: str) -> Report:
    """OpenFGA's consolidated tests; a test passes when all its assertions do."""
    report = Report(name)
    for test in doc.get("tests") or []:
        tname = str(test.get("name"))
        failures_before = len(report.failures)
        tuples: list[Relationship] = []
        try:
            for si, stage in enumerate(test.get("stages") or []):
                _stage(report, f"{tname}[{si}]", stage, tuples)
        except ModelError as exc:
            report.skipped.append(f"{tname}: {exc}")
            del report.failures[failures_before:]
            continue
        if len(report.failures) == failures_before:
            report.passed += 1
    return report


def _stage(
    report: Report, where: str, stage: Mapping[str, Any], tuples: list[Relationship]
) -> None:
    model = parse_model(str(stage["model"]))
    compiled = compile_model(model)
    try:
        Engine(compiled.datalog)
    except RuneError as exc:
        raise ModelError(f"not compiled: {exc}") from None
    new = _tuples(stage.get("tuples"), f"{where}: tuples", None)
    for rel in new:
        why = check_relationship(model, rel)
        if why:
            raise ModelError(f"{where}: tuple {rel} refused: {why}")
    tuples += new
    store = _Store(compiled, tuples)
    view = store.view

    def ctx(a: Mapping[str, Any], w: str) -> list[Relationship] | None:
        rels = _tuples(a.get("contextualTuples"), w, None)
        for rel in rels:
            if check_relationship(model, rel):
                return None
        return rels

    for i, a in enumerate(stage.get("checkAssertions") or []):
        t = a["tuple"]
        w = f"{where} check[{i}] {t['object']}#{t['relation']}@{t['user']}"
        check = partial(view.check, str(t["object"]), str(t["relation"]), str(t["user"]))
        _one(report, w, a, store, ctx(a, w), check)
    for i, a in enumerate(stage.get("listObjectsAssertions") or []):
        r = a["request"]
        w = f"{where} list_objects[{i}] {r['type']}#{r['relation']}@{r['user']}"
        objects = partial(_objects, view, str(r["type"]), str(r["relation"]), str(r["user"]))
        _one(report, w, a, store, ctx(a, w), objects)
    for i, a in enumerate(stage.get("listUsersAssertions") or []):
        r = a["request"]
        w = f"{where} list_users[{i}] {r['object']}#{r['relation']}"
        pairs = [(t, rel) for t, _, rel in (str(f).partition("#") for f in r.get("filters") or [])]
        users = partial(_users, view, str(r["object"]), str(r["relation"]), pairs)
        _one(report, w, a, store, ctx(a, w), users, users_cmp=True)


def _objects(view: ZanzibarView, otype: str, rel: str, user: str) -> list[str]:
    return _all(lambda c: view.lookup_resources(otype, rel, user, c, MAX_PAGE))


def _users(view: ZanzibarView, obj: str, rel: str, filters: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for t, r in filters:
        out += _all(partial(_subjects_page, view, obj, rel, t, r))
    return out


def _subjects_page(
    view: ZanzibarView, obj: str, rel: str, t: str, r: str, cursor: str | None
) -> LookupPage:
    return view.lookup_subjects(obj, rel, t, r, cursor, MAX_PAGE)


def _one(
    report: Report,
    where: str,
    a: Mapping[str, Any],
    store: _Store,
    context: list[Relationship] | None,
    fn: Callable[[], Any],
    users_cmp: bool = False,
) -> None:
    wants_error = "errorCode" in a
    if context is None:
        if wants_error:
            return
        report.failures.append(Failure(where, "a contextual tuple does not fit the model"))
        return
    try:
        got = store.with_context(context, fn)
    except RelationshipError as exc:
        if not wants_error:
            report.failures.append(Failure(where, f"error: {exc}"))
        return
    if wants_error:
        report.failures.append(Failure(where, f"expected error {a['errorCode']}, got {got!r}"))
        return
    expected = a.get("expectation")
    if isinstance(got, bool):
        ok = got == bool(expected)
    elif users_cmp:
        ok = _users_equal(got, expected or [])
    else:
        ok = sorted(set(got)) == sorted(set(expected or []))
    if not ok:
        report.failures.append(Failure(where, f"expected {expected!r}, found {got!r}"))
