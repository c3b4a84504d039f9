"""``rune serve`` as a process: SIGTERM drains (in-flight requests are answered) and exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.http.harness import request

DEADLINE_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Any, what: str) -> None:
    """Poll ``check()`` (a coroutine function) until it returns True."""
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_sigterm_answers_in_flight_requests_and_exits_zero() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RUNE_LOGGING__DECISIONS": "none"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rune.cli", "serve", "--port", str(port), "--token-wait", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                assert proc.returncode is None, "rune serve exited early"
                try:
                    async with session.get(f"{url}/health/ready") as resp:
                        return resp.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(ready, "readiness")
            # a request that stays in flight: its token names an offset not yet written
            token = {"at_least": {"rune.facts": {"0": 1_000_000}}}
            body = orjson.dumps(request("alice", "read", "d1", id="slow", consistency=token))

            async def slow() -> tuple[int, Any]:
                async with session.post(f"{url}/v1/authorize", data=body) as resp:
                    return resp.status, orjson.loads(await resp.read())

            pending = asyncio.create_task(slow())

            async def in_flight() -> bool:
                async with session.get(f"{url}/metrics") as resp:
                    text = await resp.text()
                for family in text_string_to_metric_families(text):
                    if family.name == "http_requests_in_flight":
                        return family.samples[0].value >= 2  # the slow one and this scrape
                return False

            await until(in_flight, "the slow request to be in flight")
            proc.send_signal(signal.SIGTERM)
            status, decision = await asyncio.wait_for(pending, DEADLINE_S)
        assert status == 200 and decision["id"] == "slow"
        assert decision["decision"] == "deny" and "stale view" in decision["error"]
        assert await asyncio.wait_for(proc.wait(), DEADLINE_S) == 0
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert '"event":"listening"' in stderr
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
