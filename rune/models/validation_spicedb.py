"""SpiceDB validation files (``zed validate``), run on a fresh engine per file.

``schema`` (or ``schemaFile``), ``relationships`` (one per line, ``//`` comments),
``assertions`` with ``assertTrue`` / ``assertFalse`` (``assertCaveated`` is refused: caveats
are not supported), optional ``validation``: ``resource#permission`` -> the expected subjects
``"[user:anne] is <...>"`` (the subjects in brackets are compared as a set,
``[user:* - {user:bob}]`` included; the ``<...>`` relationships are not compared).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rune.models.check import ZanzibarView
from rune.models.compile import CompiledModel
from rune.models.errors import ModelError, RelationshipError
from rune.models.ir import Model
from rune.models.spicedb import parse_schema
from rune.models.tuples import Relationship, parse_relationship
from rune.models.validation_common import (
    Failure,
    Report,
    Store,
    ValidationFileError,
    check_relationship,
    compile_checked,
    read_text,
)

__all__ = ["run_spicedb"]


def run_spicedb(doc: Mapping[str, Any], name: str, base: Path) -> Report:
    """Run a SpiceDB validation file (``doc``, read from ``name``; files relative to ``base``)."""
    report = Report(name)
    extra = set(doc) - {"schema", "schemaFile", "relationships", "assertions", "validation"}
    if extra:
        raise ValidationFileError(f"{name}: unknown key {sorted(extra)[0]!r}")
    model, compiled = _spicedb_schema(doc, name, base)
    store = Store(compiled, _spicedb_relationships(doc, name, model))
    _spicedb_assertions(doc, name, store.view, report)
    _spicedb_validation(doc, name, store, compiled, report)
    return report


def _spicedb_schema(doc: Mapping[str, Any], name: str, base: Path) -> tuple[Model, CompiledModel]:
    schema = doc.get("schema")
    if schema is None:
        schema = read_text(base / str(doc["schemaFile"]), name)
    if not isinstance(schema, str):
        raise ValidationFileError(f"{name}: schema: expected text")
    try:
        model = parse_schema(schema)
        return model, compile_checked(model, f"{name}: schema")
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
    doc: Mapping[str, Any], name: str, store: Store, compiled: CompiledModel, report: Report
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


def _subjects(store: Store, compiled: CompiledModel, resource: str, perm: str) -> set[str]:
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
