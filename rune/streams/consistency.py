"""Consistency tokens: ``{"at_least": {topic: {partition: offset}}}`` names records a client
produced; a request carrying one is decided only once every named record is applied
(``watermark[topic][partition] >= offset``), or denied as stale after a bounded wait."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rune.connectors.base import TP, Record
from rune.streams.context import Context

__all__ = ["Token", "Waiting", "WaitingRoom", "parse_token", "satisfied", "wait_for_token"]

Token = dict[str, dict[str, int]]


class TokenError(ValueError):
    pass


def parse_token(request: Mapping[str, Any], topics: frozenset[str]) -> Token | None:
    """The token of ``request`` (None without one); raise TokenError when malformed."""
    consistency = request.get("consistency")
    if consistency is None:
        return None
    if not isinstance(consistency, Mapping) or set(consistency) - {"at_least"}:
        raise TokenError("consistency must be {'at_least': {topic: {partition: offset}}}")
    at_least = consistency.get("at_least")
    if at_least is None:
        return None
    if not isinstance(at_least, Mapping):
        raise TokenError("consistency.at_least must be an object")
    token: Token = {}
    for topic, parts in at_least.items():
        if topic not in topics:
            raise TokenError(f"consistency.at_least names topic {topic!r}, which is not ingested")
        if not isinstance(parts, Mapping):
            raise TokenError(f"consistency.at_least.{topic} must be an object")
        for p, off in parts.items():
            digits = isinstance(p, str) and p.isascii() and p.isdigit()
            if not digits or not isinstance(off, int) or isinstance(off, bool):
                raise TokenError(f"consistency.at_least.{topic}.{p} must be an offset")
            token.setdefault(topic, {})[str(int(p))] = off
    return token or None


def satisfied(token: Token, watermark: Mapping[str, Mapping[str, int]]) -> bool:
    return all(
        watermark.get(t, {}).get(p, -1) >= off
        for t, parts in token.items()
        for p, off in parts.items()
    )


async def wait_for_token(ctx: Context, token: Token, timeout_s: float) -> bool:
    """Wait until the applied watermark satisfies ``token`` (True) or ``timeout_s`` passes or
    the service stops (False). For one-off waiters (HTTP); the stream path uses
    :class:`WaitingRoom`."""
    deadline = time.monotonic() + timeout_s
    while True:
        step = ctx.next_step  # taken before the check: no wake-up can be missed
        if satisfied(token, ctx.authorizer.watermark):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0 or ctx.stopping.is_set():
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(step.wait(), remaining)


@dataclass(order=True, slots=True)
class Waiting:
    deadline: float
    seq: int
    record: Record = field(compare=False)
    request: dict[str, Any] = field(compare=False)
    token: Token = field(compare=False)


class WaitingRoom:
    """Requests waiting for their tokens, ordered by deadline."""

    def __init__(self) -> None:
        self._heap: list[Waiting] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, record: Record, request: dict[str, Any], token: Token, deadline: float) -> None:
        heapq.heappush(self._heap, Waiting(deadline, next(self._seq), record, request, token))

    def drop(self, partitions: Iterable[TP]) -> int:
        """Forget requests of ``partitions`` (a rebalance gave them to another instance)."""
        gone = set(partitions)
        keep = [w for w in self._heap if (w.record.topic, w.record.partition) not in gone]
        dropped = len(self._heap) - len(keep)
        if dropped:
            heapq.heapify(keep)
            self._heap = keep
        return dropped

    def next_deadline(self) -> float | None:
        return self._heap[0].deadline if self._heap else None

    def take(
        self, watermark: Mapping[str, Mapping[str, int]], now: float
    ) -> tuple[list[Waiting], list[Waiting]]:
        """Remove and return ``(satisfied, expired)`` requests."""
        ready: list[Waiting] = []
        expired: list[Waiting] = []
        keep: list[Waiting] = []
        for w in self._heap:
            if satisfied(w.token, watermark):
                ready.append(w)
            elif w.deadline <= now:
                expired.append(w)
            else:
                keep.append(w)
        if ready or expired:
            heapq.heapify(keep)
            self._heap = keep
        ready.sort(key=lambda w: w.seq)
        expired.sort(key=lambda w: w.seq)
        return ready, expired
