"""``rune serve --workers 2`` on the real broker: two processes share the port, both answer,
SIGHUP and SIGTERM reach both through the supervisor, and everything exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import orjson

from tests.http.test_shutdown import free_port, until
from tests.integration.service_helpers import TopicFactory, make_topics

ADMIN = "workers-admin-token-123"


async def test_workers_share_the_port_and_follow_signals(
    kafka_bootstrap: str, kafka_topics: TopicFactory, tmp_path: Path
) -> None:
    topics = await make_topics(kafka_topics)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = tmp_path / "rune.toml"
    t = topics.model_dump()
    config.write_text(
        "version = 2\n[server]\nrate_limit_per_s = 1000.0\n[topics]\n"
        + "".join(f'{role} = "{name}"\n' for role, name in t.items())
    )
    env = {
        **os.environ,
        "RUNE_SERVER__ADMIN_TOKEN": ADMIN,
        "RUNE_KAFKA__GROUP_ID": f"workers-{topics.requests}",
        "RUNE_LOGGING__DECISIONS": "none",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rune.cli", "serve", "--kafka", kafka_bootstrap,
        "--config", str(config), "--port", str(port), "--workers", "2",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        pids: set[int] = set()
        auth = {"Authorization": f"Bearer {ADMIN}"}

        async def both_alive() -> bool:
            assert proc.returncode is None, "rune serve exited early"
            try:  # a new connection each time: SO_REUSEPORT spreads them over the workers
                async with (
                    aiohttp.ClientSession() as s,
                    s.get(f"{url}/health/live") as resp,
                ):
                    pids.add((await resp.json())["pid"])
            except aiohttp.ClientConnectionError:
                pass
            return len(pids) == 2

        await until(both_alive, "two workers answering")
        assert proc.pid not in pids  # the supervisor does not serve

        config.write_text(config.read_text().replace("1000.0", "777.0"))
        proc.send_signal(signal.SIGHUP)
        reloaded: set[int] = set()

        async def both_reloaded() -> bool:
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"{url}/admin/config", headers=auth) as resp,
            ):
                body = orjson.loads(await resp.read())
                if body["server"]["rate_limit_per_s"] == 777.0:
                    reloaded.add(int(resp.headers["X-Rune-Pid"]))
            return reloaded == pids

        await until(both_reloaded, "both workers to reload on SIGHUP")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
