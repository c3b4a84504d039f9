"""OpenFGA test files, run on a fresh engine per test (or stage).

- Store tests (``.fga.yaml``): ``model`` or ``model_file``, ``tuples`` / ``tuple_file`` /
  ``tuple_files``, ``tests`` with ``tuples``, ``check`` (``user``, ``object``, ``assertions``:
  relation -> bool), ``list_objects`` (``user``, ``type``, ``assertions``: relation -> objects)
  and ``list_users`` (``object``, ``user_filter`` [{type, relation?}], ``assertions``: relation
  -> {users}).
- The consolidated test suite: ``tests`` of ``stages`` (``model``, ``tuples``,
  ``checkAssertions``, ``listObjectsAssertions``, ``listUsersAssertions``, each with
  ``contextualTuples`` and ``expectation`` or ``errorCode``). Tuples accumulate over stages.

A list of users that holds ``type:*`` is compared without the plain ``type:`` subjects (the
wildcard implies them): OpenFGA lists them, RUNE's exact relations may not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rune.errors import RuneError
from rune.ivm import Engine
from rune.models.check import MAX_PAGE, LookupPage, ZanzibarView
from rune.models.compile import compile_model
from rune.models.errors import ModelError, RelationshipError
from rune.models.ir import Model
from rune.models.openfga import parse_model
from rune.models.tuples import Relationship, parse_tuple
from rune.models.validation_common import (
    Failure,
    Report,
    Store,
    ValidationFileError,
    check_relationship,
    compile_checked,
    load_yaml,
    read_text,
)

__all__ = ["run_consolidated", "run_store_tests"]


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


def run_store_tests(doc: Mapping[str, Any], name: str, base: Path) -> Report:
    """Run an OpenFGA store test file (``doc``, read from ``name``; files relative to
    ``base``)."""
    report = Report(name)
    src = doc.get("model")
    if src is None:
        src = read_text(base / str(doc["model_file"]), name)
    try:
        model = parse_model(src)
        compiled = compile_checked(model, f"{name}: model")
    except ModelError as exc:
        raise ValidationFileError(f"{name}: model: {exc}") from None
    tuples = _tuples(doc.get("tuples"), f"{name}: tuples", model)
    files = list(doc.get("tuple_files") or [])
    if doc.get("tuple_file"):
        files.append(doc["tuple_file"])
    for f in files:
        tuples += _tuples(load_yaml(read_text(base / str(f), name), str(f)), str(f), model)
    for ti, test in enumerate(doc.get("tests") or []):
        tname = str(test.get("name", f"tests[{ti}]"))
        extra = _tuples(test.get("tuples"), f"{name}: {tname}: tuples", model)
        store = Store(compiled, [*tuples, *extra])
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


def run_consolidated(doc: Mapping[str, Any], name: str) -> Report:
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
    store = Store(compiled, tuples)
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
    store: Store,
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
