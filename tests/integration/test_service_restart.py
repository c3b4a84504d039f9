"""SIGKILL of ``rune run --kafka`` under load, then a restart: every request produced gets a
decision (at-least-once) and the views (seen through the changefeed) equal evaluation from
scratch. SIGTERM exits 0 after finishing in-flight work."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from rune.authorizer import Authorizer
from rune.streams.changefeed import CHECKPOINT_KEY, tuple_key
from tests.integration.service_helpers import DEADLINE_S, TopicFactory, client, make_topics

BUNDLE = {
    "version": 1,
    "datalog": "reach(X, Y) :- edge(X, Y).\nreach(X, Z) :- reach(X, Y), edge(Y, Z).\n"
    'allow(P, Action::"read", R) :- reach(P, R).',
    "cedar": "",
}


def start(bootstrap: str, topics: Any, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "rune.cli", "run", "--kafka", bootstrap, "--changefeed", "reach"]
    for role, name in topics.model_dump().items():
        args += ["--topic", f"{role}={name}"]
    env = {
        **os.environ,
        "RUNE_GROUP_ID": f"g-{topics.requests[-12:]}",
        "RUNE_POLL_TIMEOUT_S": "0.02",
    }
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=log.open("ab"), stdin=subprocess.DEVNULL, env=env
    )


def node(i: int) -> dict[str, str]:
    return {"type": "N", "id": str(i)}


async def test_sigkill_under_load_then_restart(
    kafka_bootstrap: str, kafka_topics: TopicFactory, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_topics, partitions=2)
    log = tmp_path / "rune.log"
    edges = [(i, (i * 7 + 3) % 30) for i in range(30)]
    ids: set[str] = set()
    async with client(kafka_bootstrap, topics) as c:
        await c.bundle(BUNDLE)
        proc = start(kafka_bootstrap, topics, log)
        try:
            n = 0
            for round_ in range(6):
                for a, b in edges[round_ * 5 : round_ * 5 + 5]:
                    await c.event({"op": "assert", "fact": ["edge", node(a), node(b)]})
                if round_ == 3:  # retract some, as tombstones
                    for a, b in edges[:3]:
                        await c.tombstone({"op": "assert", "fact": ["edge", node(a), node(b)]})
                batch = [
                    {
                        "id": f"r{n + i}",
                        "principal": node(i % 30),
                        "action": {"type": "Action", "id": "read"},
                        "resource": node((i * 11) % 30),
                        "context": {},
                    }
                    for i in range(100)
                ]
                await asyncio.gather(*(c.request(r) for r in batch))
                ids |= {r["id"] for r in batch}
                n += 100
                if round_ == 2:
                    await c.decisions({"r0"})  # it runs and answers; now kill it mid-load
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    proc = start(kafka_bootstrap, topics, log)
            got = await c.decisions(ids, deadline_s=60)
            assert ids <= set(got)

            # the views equal evaluation from scratch (through the compacted changefeed)
            live = [(a, b) for a, b in edges if (a, b) not in edges[:3]]
            scratch = Authorizer()
            scratch.load_bundle(BUNDLE)
            scratch.apply_batch(
                [{"op": "assert", "fact": ["edge", node(a), node(b)]} for a, b in live]
            )
            want = {tuple_key("reach", row) for row in scratch.engine.lookup("reach", (None, None))}

            def current(records: list[Any]) -> set[bytes]:
                state: set[bytes] = set()
                for r in records:
                    if r.key == CHECKPOINT_KEY:
                        continue
                    if r.value is None:
                        state.discard(r.key)
                    else:
                        state.add(r.key)
                return state

            seen: list[set[bytes]] = [set()]

            def converged(records: list[Any]) -> bool:
                seen[0] = current(records)
                return seen[0] == want

            try:
                await c.read_all(topics.changes, converged, deadline_s=DEADLINE_S)
            except AssertionError as exc:  # say how far apart they are, for the next reader
                missing, extra = sorted(want - seen[0]), sorted(seen[0] - want)
                raise AssertionError(
                    f"{exc}: {len(missing)} missing {missing[:5]}, {len(extra)} extra "
                    f"{extra[:5]}; the service's log ends:\n{log.read_text()[-3000:]}"
                ) from exc
            for rid, d in got.items():
                assert d["decision"] in ("allow", "deny"), (rid, d)

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    _ = orjson
