"""Policy bundles from the files authors keep: a bundle JSON file, or a directory of sources.

A bundle directory holds (searched recursively, hidden entries skipped, in path order):

- ``*.dl``: Datalog rules, concatenated into the bundle's ``datalog``;
- ``*.cedar``: Cedar policies, concatenated into ``cedar``;
- optionally ``*.cedarschema`` (Cedar schema syntax, concatenated) *or* one ``schema.json``
  (Cedar's JSON schema): the bundle's ``schema``;
- optionally ``bundle.toml``: ``version`` (integer), ``name`` (the record key on the policy
  topic; default ``default``), ``description``.

Other files are ignored. :func:`read_bundle` returns a :class:`BundleSource`: the bundle as
JSON plus the map from the concatenated text back to the files, so that an error located in
the bundle (``datalog 12:5``, ``cedar:policy3``, ``cedar:policy3 (20:1)``, ``schema``) is
reported at ``FILE:LINE:COLUMN`` (:meth:`BundleSource.locate`).

Pitfalls: Cedar numbers policies ``policy0``, ``policy1``... across the concatenation, so a
policy's id changes when a file sorted before it gains a policy (use ``@id("...")``
annotations to name policies stably). A Datalog statement or Cedar policy must not run past
the end of its file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from rune.policies.cedartext import _statements
from rune.policies.errors import BundleError, PolicyError

__all__ = [
    "BUNDLE_TOML",
    "DEFAULT_NAME",
    "BundleSource",
    "BundleSourceError",
    "SourceSpan",
    "build_bundle",
    "read_bundle",
]

BUNDLE_TOML: Final = "bundle.toml"
DEFAULT_NAME: Final = "default"
DEFAULT_VERSION: Final = 1
"""The version of a directory bundle whose ``bundle.toml`` names none (and no override)."""
_TOML_KEYS: Final = frozenset({"version", "name", "description"})


class BundleSourceError(BundleError):
    """Bundle sources cannot be read or assembled (missing or unreadable file, invalid JSON or
    ``bundle.toml``, a directory without policies); ``location`` names the file."""


@dataclass(frozen=True, slots=True)
class SourceSpan:
    """One source file's lines within the concatenated text of its part of the bundle."""

    label: str
    """The file as given (the directory argument joined with its relative path)."""
    part: str
    """``datalog``, ``cedar`` or ``schema``."""
    first_line: int
    """Line of the concatenation where the file's line 1 is (1-based)."""
    lines: int


@dataclass(frozen=True, slots=True)
class BundleSource:
    """A bundle ready to load or publish, and where each part of it came from."""

    bundle: dict[str, Any]
    """The bundle as a JSON-ready object (``version``, ``datalog``, ``cedar``, ``schema``...)."""
    label: str
    """The path given (a file or a directory)."""
    name: str = DEFAULT_NAME
    """The record key on the policy topic (``bundle.toml``'s or the JSON's ``name``)."""
    spans: tuple[SourceSpan, ...] = ()
    """Empty for a bundle JSON file (its locations are the bundle's own)."""
    toml: str | None = None
    """The ``bundle.toml`` read, if any."""
    _cedar_starts: tuple[tuple[int, int], ...] = field(default=(), repr=False)

    @property
    def is_directory(self) -> bool:
        return bool(self.spans) or self.toml is not None

    def to_json(self) -> bytes:
        """The bundle JSON (what ``rune bundle build`` writes)."""
        return orjson.dumps(self.bundle, option=orjson.OPT_INDENT_2) + b"\n"

    def position(self, part: str, line: int, column: int = 0) -> str | None:
        """``FILE:LINE[:COLUMN]`` of ``line`` of the concatenated ``part`` (None: no file)."""
        for span in self.spans:
            if span.part == part and span.first_line <= line < span.first_line + span.lines:
                where = f"{span.label}:{line - span.first_line + 1}"
                return f"{where}:{column}" if column else where
        return None

    def policy_position(self, policy_id: str) -> str | None:
        """``FILE:LINE:COLUMN`` where Cedar's ``policyN`` starts (None: unknown id)."""
        if not policy_id.startswith("policy") or not policy_id[6:].isdigit():
            return None
        index = int(policy_id[6:])
        if index >= len(self._cedar_starts):
            return None
        line, column = self._cedar_starts[index]
        return self.position("cedar", line, column)

    def files(self, part: str) -> list[str]:
        return [s.label for s in self.spans if s.part == part]

    def locate(self, exc: PolicyError) -> str:
        """The error as ``FILE:LINE:COLUMN: message`` (or ``FILES: message`` when no line
        applies); for a bundle JSON file ``FILE: location: message``."""
        loc = exc.location
        if not self.is_directory:
            return f"{self.label}: {exc}"
        where: str | None = None
        detail = ""
        if loc.startswith("datalog "):
            line, _, column = loc[8:].partition(":")
            if line.isdigit():
                where = self.position("datalog", int(line), int(column or 0))
        elif loc.startswith("cedar:"):
            pid, _, rest = loc[6:].partition(" ")
            rest = rest.strip("()")
            line, _, column = rest.partition(":")
            if line.isdigit():
                where = self.position("cedar", int(line), int(column or 0))
            else:
                where = self.policy_position(pid)
            detail = f"{pid}: "
        elif loc == "version" and self.toml is not None:
            where = f"{self.toml}: version"
        if where is None:
            part = loc.split(":")[0].split(" ")[0]
            files = self.files(part) if part in ("datalog", "cedar", "schema") else []
            where = ", ".join(files) if files else self.label
            if not files and loc:
                detail = f"{loc}: "
        return f"{where}: {detail}{exc.message}"


def read_bundle(path: Path, version: int | None = None) -> BundleSource:
    """The bundle of a JSON file or a directory of sources (``version`` overrides the one
    given in the files). Raises :class:`BundleSourceError`; the bundle is *not* validated
    (``Authorizer.load_bundle`` / ``validate_bundle`` does that; locate its errors with
    :meth:`BundleSource.locate`)."""
    if path.is_dir():
        return build_bundle(path, version)
    raw = _read(path)
    try:
        bundle = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BundleSourceError(f"invalid JSON: {exc}", str(path)) from None
    if not isinstance(bundle, dict):
        raise BundleSourceError("a bundle JSON file holds an object", str(path))
    if version is not None:
        bundle["version"] = version
    name = bundle.get("name")
    return BundleSource(bundle, str(path), name if isinstance(name, str) else DEFAULT_NAME)


def build_bundle(directory: Path, version: int | None = None) -> BundleSource:
    """Assemble the bundle of a directory of sources (see the module docstring)."""
    if not directory.is_dir():
        raise BundleSourceError("not a directory", str(directory))
    found: dict[str, list[Path]] = {"datalog": [], "cedar": [], "cedarschema": [], "json": []}
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix == ".dl":
            found["datalog"].append(p)
        elif p.suffix == ".cedar":
            found["cedar"].append(p)
        elif p.suffix == ".cedarschema":
            found["cedarschema"].append(p)
        elif p.name == "schema.json":
            found["json"].append(p)
    if not found["datalog"] and not found["cedar"]:
        raise BundleSourceError("no *.dl or *.cedar files in the bundle directory", str(directory))
    if found["json"] and (found["cedarschema"] or len(found["json"]) > 1):
        names = ", ".join(str(p) for p in found["json"] + found["cedarschema"])
        raise BundleSourceError(f"more than one kind of schema: {names}", str(directory))

    spans: list[SourceSpan] = []
    bundle: dict[str, Any] = {}
    meta = _toml(directory / BUNDLE_TOML)
    name = meta.get("name", DEFAULT_NAME)
    bundle["version"] = version if version is not None else meta.get("version", DEFAULT_VERSION)
    if "name" in meta:
        bundle["name"] = name
    if "description" in meta:
        bundle["description"] = meta["description"]
    bundle["datalog"] = _concat(found["datalog"], "datalog", spans)
    cedar = _concat(found["cedar"], "cedar", spans)
    bundle["cedar"] = cedar
    if found["cedarschema"]:
        bundle["schema"] = _concat(found["cedarschema"], "schema", spans)
    elif found["json"]:
        path = found["json"][0]
        try:
            schema = orjson.loads(_read(path))
        except orjson.JSONDecodeError as exc:
            raise BundleSourceError(f"invalid JSON: {exc}", str(path)) from None
        if not isinstance(schema, dict):
            raise BundleSourceError("a JSON schema is an object", str(path))
        bundle["schema"] = schema
        spans.append(SourceSpan(str(path), "schema", 1, 1))
    starts = tuple((line, column) for _, line, column in _statements(cedar))
    toml = str(directory / BUNDLE_TOML) if (directory / BUNDLE_TOML).is_file() else None
    return BundleSource(bundle, str(directory), name, tuple(spans), toml, starts)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BundleSourceError(f"cannot read: {exc.strerror or exc}", str(path)) from None


def _text(path: Path) -> str:
    try:
        return _read(path).decode()
    except UnicodeDecodeError as exc:
        raise BundleSourceError(f"not UTF-8: {exc}", str(path)) from None


def _concat(paths: list[Path], part: str, spans: list[SourceSpan]) -> str:
    """The files' texts, each ending with a newline, recording each file's first line."""
    chunks: list[str] = []
    line = 1
    for path in paths:
        text = _text(path)
        if text and not text.endswith("\n"):
            text += "\n"
        count = text.count("\n")
        spans.append(SourceSpan(str(path), part, line, max(count, 1)))
        chunks.append(text)
        line += count
    return "".join(chunks)


def _toml(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        return {}
    try:
        meta = tomllib.loads(_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise BundleSourceError(f"invalid TOML: {exc}", str(path)) from None
    extra = set(meta) - _TOML_KEYS
    if extra:
        raise BundleSourceError(
            f"unknown key {sorted(extra)[0]!r} (known: description, name, version)", str(path)
        )
    version = meta.get("version", DEFAULT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BundleSourceError(
            f"'version' must be a non-negative integer, got {version!r}", str(path)
        )
    for key in ("name", "description"):
        if key in meta and not isinstance(meta[key], str):
            raise BundleSourceError(f"{key!r} must be a string", str(path))
    if meta.get("name") == "":
        raise BundleSourceError("'name' must not be empty", str(path))
    return meta
