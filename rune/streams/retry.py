"""Waiting between attempts: exponential backoff with jitter, cut short when the service
stops. The stream stages use it for every fault they ride out (a broker away, a delivery
that timed out) instead of failing."""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Final

__all__ = ["Backoff"]

FIRST_S: Final = 0.05


class Backoff:
    """``await backoff.wait(stopping)``: 50 ms, then twice as long each time (± 20 %), at
    most ``max_s``; returns early when ``stopping`` is set."""

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self.attempts = 0

    def next_delay(self) -> float:
        delay = min(self.max_s, FIRST_S * 2**self.attempts)
        self.attempts += 1
        return float(delay * random.uniform(0.8, 1.2))

    async def wait(self, stopping: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), self.next_delay())

    def reset(self) -> None:
        self.attempts = 0
