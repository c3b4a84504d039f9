"""Request limits: body size (413), JSON decoding (400), per-client rate (429).

JSON numbers are read as JSON Schema reads them (:func:`rune.jsonbytes.loads_numbers`, the
same on the topics). A body sent as JSON Lines (:data:`JSON_LINES` content types, e.g. an
events file with ``Content-Type: application/x-ndjson``) is the list of its lines' values.

The rate limit is a token bucket per client address: ``rate_limit_per_s`` tokens per second up
to ``rate_limit_burst``; a request takes one token or is refused with ``Retry-After``. Buckets
of idle clients are dropped (at most ``MAX_CLIENTS`` are kept), so a flood of addresses cannot
grow memory without bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any, Final

import orjson
from aiohttp import web

from rune.http.errors import HttpError
from rune.jsonbytes import loads_numbers

__all__ = ["JSON_LINES", "RateLimiter", "read_json"]

JSON_LINES: Final = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/x-jsonlines"}
)
"""Content types read as JSON Lines: the body is then a list of the values of its lines."""

MAX_CLIENTS: Final = 10_000
MAX_REQUEST_LINE: Final = 64 * 1024
"""Bytes of the request line. The longest URL the API takes (a lookup with ids of 1024
characters, percent-encoded, and a cursor) is about 42 KiB, under it: every such URL is routed
and answered with the JSON body. A longer line is refused by aiohttp before routing, with its
plain-text 400 (documented)."""


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
    if request.content_type in JSON_LINES:
        return _json_lines(body)
    try:
        return loads_numbers(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"invalid JSON: {exc}") from None


def _json_lines(body: bytes) -> list[Any]:
    """A JSON Lines body (one value per line, blank lines skipped) as a list."""
    out: list[Any] = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(loads_numbers(line))
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, "malformed_json", f"line {number}: invalid JSON: {exc}") from None
    if not out:
        raise HttpError(400, "malformed_json", "no JSON value on any line")
    return out
