"""Request limits: body size (413), JSON decoding (400), per-client rate (429).

JSON numbers are read as JSON Schema reads them: a number with a zero fractional part (``3.0``,
``1e3``) is the integer it denotes, up to 2**53 in magnitude (where a double holds every
integer); any other number stays a float, which no field of the API takes but ``tenant`` and
``ts``. The decoder reads integers written as such exactly from -2**63 to 2**64 - 1, and beyond
as floats, which stay floats (-2**63 - 1 must not become -2**63).

The rate limit is a token bucket per client address: ``rate_limit_per_s`` tokens per second up
to ``rate_limit_burst``; a request takes one token or is refused with ``Retry-After``. Buckets
of idle clients are dropped (at most ``MAX_CLIENTS`` are kept), so a flood of addresses cannot
grow memory without bound.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from typing import Any, Final

import orjson
from aiohttp import web

from rune.http.errors import HttpError

__all__ = ["RateLimiter", "read_json"]

MAX_CLIENTS: Final = 10_000
MAX_REQUEST_LINE: Final = 64 * 1024
"""Bytes of the request line. The longest URL the API takes (a lookup with ids of 1024
characters, percent-encoded, and a cursor) is about 42 KiB, under it: every such URL is routed
and answered with the JSON body. A longer line is refused by aiohttp before routing, with its
plain-text 400 (documented)."""
EXACT: Final = 2.0**53
"""Integral floats up to this magnitude are read as integers."""
_MAYBE_FLOAT: Final = re.compile(rb"[0-9][.eE]")
"""A float token has a digit before its ``.`` or exponent (a string may match too: harmless)."""


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.configure(rate_per_s, burst)

    def configure(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)

    def take(self, client: str, now: float | None = None) -> float:
        """Take a token for ``client``: 0.0 when allowed, else seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        buckets = self._buckets
        tokens, last = buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            buckets[client] = (tokens - 1.0, now)
            wait = 0.0
        else:
            buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(buckets) > MAX_CLIENTS:
            buckets.popitem(last=False)
        return wait

    @staticmethod
    def retry_after(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))


async def read_json(request: web.Request, max_bytes: int) -> Any:
    """The request body as JSON; 413 above ``max_bytes``, 400 when not JSON."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise HttpError(413, "body_too_large", f"body of {length} bytes exceeds {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise HttpError(413, "body_too_large", f"body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise HttpError(400, "malformed_json", "empty body; expected JSON")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"invalid JSON: {exc}") from None
    return integral_numbers(doc) if _MAYBE_FLOAT.search(body) else doc


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
