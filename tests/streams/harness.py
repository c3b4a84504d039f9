"""Run the service on the embedded log and talk to it as a client would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson

from rune.config import load_settings
from rune.connectors.base import Outgoing, Position
from rune.connectors.embedded import EmbeddedLog
from rune.streams import Service, event_key

U = {"type": "User", "id": "u"}
A = {"type": "Action", "id": "read"}
D = {"type": "Doc", "id": "d"}
BUNDLE = {"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""}


def fact(op: str, *args: Any) -> dict[str, Any]:
    return {"op": op, "fact": list(args)}


class Client:
    def __init__(self, log: EmbeddedLog, service: Service) -> None:
        self.log = log
        self.service = service
        self.topics = service.ctx.settings.topics

    async def event(self, event: dict[str, Any] | None, key: bytes | None = None) -> Position:
        value = orjson.dumps(event) if event is not None else None
        k = key if key is not None else (event_key(event) if event is not None else None)
        [pos] = await self.log.produce([Outgoing(self.topics.facts, k, value)])
        await self.applied(pos)
        return pos

    async def applied(self, pos: Position) -> None:
        """Wait until ingest handled the record at ``pos`` (requests sent after it then see
        it: ingest and serve run side by side, so without this they race)."""
        az = self.service.ctx.authorizer

        def done() -> bool:
            return az.watermark.get(pos.topic, {}).get(str(pos.partition), -1) >= pos.offset

        await self.until(done)

    async def bundle(self, bundle: dict[str, Any] | bytes) -> None:
        """Produce a bundle and wait until the service has handled it (activated it, or
        rejected it): bundles compile off the loop, so requests sent right after would
        otherwise race the swap."""
        stats = self.service.ctx.stats
        handled = stats.bundles_loaded + stats.bundles_rejected
        value = bundle if isinstance(bundle, bytes) else orjson.dumps(bundle)
        await self.log.produce([Outgoing(self.topics.policies, b"default", value)])
        await self.until(lambda: stats.bundles_loaded + stats.bundles_rejected > handled)

    async def request(self, rid: str, **extra: Any) -> None:
        req = {"id": rid, "principal": U, "action": A, "resource": D, "context": {}, **extra}
        await self.log.produce([Outgoing(self.topics.requests, None, orjson.dumps(req))])

    async def raw(self, topic: str, value: bytes | None, key: bytes | None = None) -> None:
        await self.log.produce([Outgoing(topic, key, value)])

    def decisions(self) -> dict[str, dict[str, Any]]:
        out = {}
        for r in self.log.records(self.topics.decisions):
            d = orjson.loads(r.value or b"null")
            out[d["id"]] = d
        return out

    def dead(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value or b"null") for r in self.log.records(self.topics.dlq)]

    async def decision(self, rid: str, deadline_s: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + deadline_s
        while rid not in self.decisions():
            assert time.monotonic() < deadline, f"no decision for {rid}"
            await asyncio.sleep(0.01)
        return self.decisions()[rid]

    async def until(self, predicate: Any, deadline_s: float = 10.0) -> None:
        deadline = time.monotonic() + deadline_s
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached"
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running(**stream: Any) -> AsyncIterator[Client]:
    log = EmbeddedLog()
    notices: list[str] = []
    service = Service(
        load_settings(None, {"kafka": {"partitions": 2}, "stream": stream}),
        log,
        notice=notices.append,
    )
    service.notices = notices  # type: ignore[attr-defined]
    task = asyncio.create_task(service.run())
    await service.ctx.ready.wait()
    client = Client(log, service)
    try:
        yield client
    finally:
        service.stop()
        await asyncio.wait_for(task, 10)
