"""A fetch waiting for records wakes on the next append, whatever other readers do."""

from __future__ import annotations

import asyncio

from rune.connectors.base import Outgoing
from rune.connectors.embedded import EmbeddedLog


async def test_a_wakeup_is_not_lost_to_another_readers_wait() -> None:
    log = EmbeddedLog()
    log.create_topic("a")
    log.create_topic("b")
    a, b = await log.assign(["a"]), await log.assign(["b"])
    waiting = asyncio.create_task(a.fetch(10, 60))
    await asyncio.sleep(0)  # `a` found nothing and waits
    log.append(Outgoing("a", None, b"x"))
    assert await b.fetch(10, 0.001) == []  # another reader waits (and times out) meanwhile
    # before the fix, `b` cleared the shared event before `a`'s wait ran: `a` slept 60 s
    got = await asyncio.wait_for(waiting, 10)
    assert [r.value for r in got] == [b"x"]
