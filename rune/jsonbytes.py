"""JSON bytes that are kept: ``orjson.dumps`` returns a bytes object holding a 4 KiB buffer
whatever its length (measured with orjson 3.13: 4,097 bytes traced for ``{"a": 1}``), which
is harmless for a record produced and dropped, but costs 4 KiB per entry wherever the bytes
live on (cache keys, the changefeed's mirror). :func:`dumps_kept` copies them to their size.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps_kept"]


def dumps_kept(value: Any, option: int = 0) -> bytes:
    """``orjson.dumps(value, option=option)``, copied to its exact size (``bytes(b)`` of exact
    bytes returns ``b`` itself, so the copy is made with ``%b``)."""
    return b"%b" % orjson.dumps(value, option=option)
