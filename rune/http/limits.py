"""Request limits: body size (413), JSON decoding (400), per-client rate (429).

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

__all__ = ["RateLimiter", "read_json"]

MAX_CLIENTS: Final = 10_000


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
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, "malformed_json", f"invalid JSON: {exc}") from None
