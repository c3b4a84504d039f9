"""Entity references written the Cedar way, ``Type::"id"``, for files people write.

``parse_ref('App::User::"alice"')`` gives ``EntityRef("App::User", "alice")``; the id is a
Cedar string literal (escapes ``\\"``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``, ``\\0``, ``\\'``,
``\\u{...}``). :func:`expand_refs` turns every such string of a parsed YAML/JSON document into
the contract's JSON form. Pitfall: a plain string value that happens to read ``T::"x"`` is
taken for an entity; write such a value in a file that does not expand references.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, Final

import orjson

from rune.ivm.values import EntityRef

__all__ = ["expand_refs", "format_ref", "parse_ref", "ref_json"]

_REF_RE: Final = re.compile(
    r'\A([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)::"((?:[^"\\]|\\.)*)"\Z', re.S
)
_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\0", "'": "'"}
_ESCAPE_RE: Final = re.compile(r"\\(u\{[0-9A-Fa-f]{1,6}\}|.)", re.S)


def _unescape(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u{"):
        return chr(int(code[2:-1], 16))
    if code in _ESCAPES:
        return _ESCAPES[code]
    raise ValueError(f"invalid escape \\{code}")


def parse_ref(text: str) -> EntityRef | None:
    """``Type::"id"`` as an :class:`EntityRef`; None when ``text`` is not one."""
    m = _REF_RE.match(text)
    if m is None:
        return None
    try:
        return EntityRef(m.group(1), _ESCAPE_RE.sub(_unescape, m.group(2)))
    except (ValueError, OverflowError):
        return None


def format_ref(ref: EntityRef) -> str:
    """``Type::"id"`` (the id escaped as a JSON string, which Cedar reads the same)."""
    return f"{ref.type}::{orjson.dumps(ref.id).decode()}"


def ref_json(ref: EntityRef, cedar_form: bool = False) -> dict[str, Any]:
    """``{"type", "id"}``, or ``{"__entity": {...}}`` with ``cedar_form``."""
    uid = {"type": ref.type, "id": ref.id}
    return {"__entity": uid} if cedar_form else uid


_CEDAR_VALUE_KEYS: Final = frozenset({"attrs", "tags", "context"})
"""Below these keys references become ``{"__entity": ...}`` (a bare ``{"type","id"}`` would
be a record there)."""


def expand_refs(value: Any, cedar_keys: Collection[str] = _CEDAR_VALUE_KEYS) -> Any:
    """``value`` with every ``Type::"id"`` string replaced by its JSON form (a new value)."""
    return _expand(value, False, cedar_keys)


def _expand(value: Any, cedar: bool, keys: Collection[str]) -> Any:
    if isinstance(value, str):
        ref = parse_ref(value)
        return value if ref is None else ref_json(ref, cedar)
    if isinstance(value, list):
        return [_expand(v, cedar, keys) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, cedar or k in keys, keys) for k, v in value.items()}
    return value
