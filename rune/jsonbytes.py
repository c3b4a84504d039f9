"""JSON bytes in and out, the way RUNE reads and keeps them.

- :func:`loads_numbers`: numbers as JSON Schema reads them: a number with a zero fractional
  part (``3.0``, ``1e3``) is the integer it denotes, up to 2**53 in magnitude (where a double
  holds every integer); any other number stays a float, which no field of the contract takes
  but ``tenant`` and ``ts``. Integers written as such are exact from -2**63 to 2**64 - 1, and
  beyond are floats, which stay floats (-2**63 - 1 must not become -2**63). HTTP bodies and
  topic records are read alike.
- :func:`dumps_kept`: ``orjson.dumps`` returns a bytes object holding a 4 KiB buffer whatever
  its length (measured with orjson 3.13: 4,097 bytes traced for ``{"a": 1}``), harmless for a
  record produced and dropped, but 4 KiB per entry wherever the bytes live on (cache keys,
  the changefeed's mirror); this copies them to their size.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

__all__ = ["EXACT", "dumps_kept", "integral_numbers", "loads_numbers"]

EXACT: Final = 2.0**53
"""Integral floats up to this magnitude are read as integers."""
_MAYBE_FLOAT: Final = re.compile(rb"[0-9][.eE]")
"""A float token has a digit before its ``.`` or exponent (a string may match too: harmless)."""


def loads_numbers(raw: bytes) -> Any:
    """``orjson.loads(raw)`` with integral floats made integers (raise ``JSONDecodeError``);
    the common document without a float pays one regular-expression scan."""
    doc = orjson.loads(raw)
    return integral_numbers(doc) if _MAYBE_FLOAT.search(raw) else doc


def dumps_kept(value: Any, option: int = 0) -> bytes:
    """``orjson.dumps(value, option=option)``, copied to its exact size (``bytes(b)`` of exact
    bytes returns ``b`` itself, so the copy is made with ``%b``)."""
    return b"%b" % orjson.dumps(value, option=option)


def _integer(value: float) -> int | float:
    return int(value) if value.is_integer() and -EXACT <= value <= EXACT else value


def integral_numbers(doc: Any) -> Any:
    """``doc`` (decoded JSON) with its integral floats made integers, in place, without
    recursion (nesting is bounded by the decoder, not by Python's stack)."""
    if type(doc) is float:
        return _integer(doc)
    stack = [doc]
    while stack:
        node = stack.pop()
        if type(node) is list:
            for i, value in enumerate(node):
                if type(value) is float:
                    node[i] = _integer(value)
                elif type(value) is list or type(value) is dict:
                    stack.append(value)
        elif type(node) is dict:
            for key, value in node.items():
                if type(value) is float:
                    node[key] = _integer(value)
                elif type(value) is list or type(value) is dict:
                    stack.append(value)
    return doc
