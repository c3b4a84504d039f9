"""Policy bundles: ``{"version", "datalog", "cedar", "schema"?}`` compiled once, swapped whole.

Cedar policies are parsed once into a reusable ``cedarpy.PolicySet`` (``cedar`` is Cedar text,
or Cedar's JSON policy format as an object); the schema (Cedar or JSON schema syntax, or an
object) into a ``cedarpy.Schema``; with a schema the policies are validated. The Datalog text is
checked by compiling it (with the built-in rules appended) on an empty engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import cedarpy
import orjson

from rune.errors import RuneError
from rune.ivm.errors import DatalogError
from rune.ivm.parser import parse
from rune.ivm.values import EntityRef
from rune.policies.builtin_rules import ALLOW, BUILTIN_RULES, DENY
from rune.policies.cedartext import PolicyInfo, locate_parse_error, policy_info
from rune.policies.errors import BundleError
from rune.policies.uids import kind
from rune.policies.views import Views

__all__ = [
    "MAX_BUNDLE_CHARS",
    "MAX_BUNDLE_DEPTH",
    "Bundle",
    "build_bundle",
    "compile_bundle",
    "datalog_source",
    "json_depth",
]

MAX_BUNDLE_CHARS: Final = 16 * 1024 * 1024
MAX_BUNDLE_DEPTH: Final = 128
"""Deepest nesting of a bundle's JSON (Cedar JSON policies and schemas nest; beyond this,
encoders and Cedar's parser would fail on recursion limits)."""
VERSION_MAX: Final = 2**63 - 1
_FIELDS: Final = frozenset({"version", "datalog", "cedar", "schema", "name", "description"})


@dataclass(frozen=True, slots=True)
class Bundle:
    version: int
    datalog: str
    cedar: str | dict[str, object]
    schema_source: str | dict[str, object] | None
    policies: cedarpy.PolicySet = field(repr=False)
    schema: cedarpy.Schema | None = field(repr=False)
    info: dict[str, PolicyInfo] = field(repr=False)
    literals: frozenset[EntityRef] = field(repr=False)
    """Entity literals of the policies (always part of a Cedar entity slice)."""

    @property
    def has_cedar(self) -> bool:
        return len(self.policies) > 0

    @property
    def needs_cedar(self) -> bool:
        """Cedar runs on a request when there are policies or a schema to check it against."""
        return len(self.policies) > 0 or self.schema is not None

    @property
    def has_forbid(self) -> bool:
        return any(p.effect == "forbid" and not p.is_template for p in self.info.values())


def datalog_source(user: str) -> str:
    """The program the engine runs: the bundle's rules, then the built-in rules."""
    return user + "\n" + BUILTIN_RULES


def compile_bundle(raw: object, compile_datalog: Callable[[str], Views]) -> Bundle:
    """Validate a raw bundle; raise :class:`BundleError` with the policy id or line:column."""
    return build_bundle(raw, compile_datalog)[0]


def build_bundle(
    raw: object, compile_datalog: Callable[[str], Views]
) -> tuple[Bundle, Views | None]:
    """:func:`compile_bundle`, also returning the engine ``compile_datalog`` made of the
    bundle's program (None for a bundle without rules: nothing was compiled)."""
    if not isinstance(raw, dict):
        raise BundleError(f"a bundle is an object, got {kind(raw)}")
    extra = set(raw) - _FIELDS
    if extra:
        raise BundleError(f"unknown field {sorted(extra)[0]!r}", sorted(extra)[0])
    version = raw.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise BundleError(f"'version' must be a non-negative integer, got {version!r}", "version")
    if version > VERSION_MAX:
        raise BundleError(f"'version' must be at most 2**63-1, got {version}", "version")
    datalog = raw.get("datalog", "")
    if not isinstance(datalog, str):
        raise BundleError(f"'datalog' must be a string, got {kind(datalog)}", "datalog")
    cedar = raw.get("cedar", "")
    if not isinstance(cedar, str | dict):
        raise BundleError(f"'cedar' must be a string or an object, got {kind(cedar)}", "cedar")
    schema_src = raw.get("schema")
    if schema_src is not None and not isinstance(schema_src, str | dict):
        raise BundleError(
            f"'schema' must be a string or an object, got {kind(schema_src)}", "schema"
        )
    if len(datalog) + (len(cedar) if isinstance(cedar, str) else 0) > MAX_BUNDLE_CHARS:
        raise BundleError(f"bundle larger than {MAX_BUNDLE_CHARS} characters")
    for name in ("cedar", "schema"):
        depth = json_depth(raw.get(name), MAX_BUNDLE_DEPTH)
        if depth > MAX_BUNDLE_DEPTH:
            raise BundleError(f"'{name}' nests deeper than {MAX_BUNDLE_DEPTH} levels", name)

    schema = _schema(schema_src)
    policies, est = _policies(cedar)
    if schema is not None:
        _validate(cedar, est, schema)
    info, literals = policy_info(est)
    engine = _check_datalog(datalog, compile_datalog)
    bundle = Bundle(
        version, datalog, cedar, schema_src, policies, schema, info, frozenset(literals)
    )
    return bundle, engine


def json_depth(value: object, limit: int) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted up to ``limit + 1``
    (iterative: a deep value cannot exhaust Python's recursion)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            depth += 1
            if depth > limit:
                return depth
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth) for child in children)
    return deepest


def _schema(src: str | dict[str, object] | None) -> cedarpy.Schema | None:
    if src is None:
        return None
    try:
        if isinstance(src, dict):
            return cedarpy.Schema.from_json_str(orjson.dumps(src).decode())
        if src.lstrip().startswith("{"):
            return cedarpy.Schema.from_json_str(src)
        return cedarpy.Schema.from_str(src)
    except ValueError as exc:
        raise BundleError(f"Cedar schema does not parse: {exc}", "schema") from None


def _policies(cedar: str | dict[str, object]) -> tuple[cedarpy.PolicySet, dict[str, object]]:
    if isinstance(cedar, dict):
        text = orjson.dumps(cedar).decode()
        try:
            return cedarpy.PolicySet.from_json_str(text), cedar
        except ValueError as exc:
            raise BundleError(f"Cedar JSON policy set does not parse: {exc}", "cedar") from None
    try:
        policies = cedarpy.PolicySet.from_str(cedar)
    except ValueError as exc:
        where = locate_parse_error(cedar)
        if where is not None:
            raise BundleError(f"Cedar policy does not parse: {where[1]}", where[0]) from None
        raise BundleError(f"Cedar policies do not parse: {exc}", "cedar") from None
    est = orjson.loads(cedarpy.policies_to_json_str(cedar)) if len(cedar.strip()) else {}
    return policies, est


def _validate(
    cedar: str | dict[str, object], est: dict[str, object], schema: cedarpy.Schema
) -> None:
    if isinstance(cedar, str):
        result = cedarpy.validate_policies(cedar, schema)
        if not result.validation_passed:
            first = result.errors[0]
            more = f" (and {len(result.errors) - 1} more)" if len(result.errors) > 1 else ""
            raise BundleError(first.error + more, f"cedar:{first.policy_id}")
        return
    for section in ("staticPolicies", "templates"):
        policies = est.get(section) or {}
        assert isinstance(policies, dict)
        for pid, body in policies.items():
            single: dict[str, object] = {"staticPolicies": {}, "templates": {}, "templateLinks": []}
            single[section] = {"policy0": body}
            text = cedarpy.policies_from_json_str(orjson.dumps(single).decode())
            result = cedarpy.validate_policies(text, schema)
            if not result.validation_passed:
                raise BundleError(result.errors[0].error, f"cedar:{pid}")


def _check_datalog(datalog: str, compile_datalog: Callable[[str], Views]) -> Views | None:
    try:
        program = parse(datalog)  # syntax errors located in the bundle's own text
        if not program.rules and not program.on_demand:
            return None  # the built-in rules alone (a Cedar-only bundle): nothing to check
        engine = compile_datalog(datalog_source(datalog))
    except DatalogError as exc:
        raise datalog_error(exc, datalog) from None
    for rel in (ALLOW, DENY):
        arity = engine.arity(rel)
        if arity is not None and arity != 3:
            raise BundleError(
                f"{rel!r} must have three arguments (principal, action, resource), not {arity}",
                "datalog",
            )
    return engine


def datalog_error(exc: RuneError, datalog: str) -> BundleError:
    """A :class:`BundleError` for an engine error, located in the bundle's Datalog text."""
    if not isinstance(exc, DatalogError):
        return BundleError(str(exc), "datalog")
    user_lines = datalog.count("\n") + 1
    if exc.line and exc.line > user_lines:
        return BundleError(f"conflicts with RUNE's built-in relations ({exc.message})", "datalog")
    where = f"datalog {exc.line}:{exc.column}" if exc.line else "datalog"
    return BundleError(exc.message, where)
