"""HTTP end to end: ``rune serve`` (embedded log, drive workload) in its own process, a load
generator here with C concurrent clients on loopback.

    python3 perf/bench_http.py [--scale 0.01] [--seconds 5] [--clients 16] [--batch 1]

Prints p50/p95/p99 of the client-observed latency and decisions/s for single requests (and
for ``--batch N`` requests per POST), with ``logging.decisions`` at ``none`` and at ``all``;
asserts nothing. docs/design.md §6 sets no HTTP target; the in-process figures of
``bench_authorizer.py`` are the floor. Both processes share the machine's 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from rune.workloads import drive


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_workload(folder: Path, scale: float, n: int) -> list[dict[str, Any]]:
    facts = drive.generate(scale)
    (folder / "bundle.json").write_bytes(orjson.dumps(drive.bundle(cedar=False)))
    with (folder / "events.jsonl").open("wb") as out:
        for event in drive.fact_events(facts):
            out.write(orjson.dumps(event) + b"\n")
    return drive.check_requests(facts, n, seed=7)


async def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as s:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"rune serve exited with {proc.returncode}")
            try:
                async with s.get(f"{url}/health/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)


async def load(
    url: str, requests: list[dict[str, Any]], clients: int, seconds: float, batch: int
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    decided = 0
    stop = time.perf_counter() + seconds
    bodies = [
        orjson.dumps(requests[i : i + batch] if batch > 1 else requests[i])
        for i in range(0, len(requests) - batch + 1, batch)
    ]

    async def client(k: int, session: aiohttp.ClientSession) -> None:
        nonlocal decided
        i = k
        while time.perf_counter() < stop:
            body = bodies[i % len(bodies)]
            i += clients
            t = time.perf_counter()
            async with session.post(f"{url}/v1/authorize", data=body) as r:
                await r.read()
                assert r.status == 200, r.status
            latencies.append(time.perf_counter() - t)
            decided += batch

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(k, session) for k in range(clients)))
        elapsed = time.perf_counter() - start
    return latencies, decided, elapsed


def pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[q - 1] * 1e3 if len(xs) > 1 else float("nan")


async def run_case(args: argparse.Namespace, folder: Path, reqs: list[dict[str, Any]],
                   decisions: str, batch: int) -> None:  # fmt: skip
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RUNE_LOGGING__DECISIONS": decisions,
        "RUNE_SERVER__RATE_LIMIT_PER_S": "0",
    }
    workload = ["--bundle", str(folder / "bundle.json"), "--events", str(folder / "events.jsonl")]
    cmd = [sys.executable, "-m", "rune.cli", "serve", "--port", str(port), *workload]
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, env=env, stderr=devnull)
        try:
            await wait_ready(url, proc)
            await load(url, reqs, args.clients, 1.0, batch)  # warm-up (cache, indexes)
            lat, n, elapsed = await load(url, reqs, args.clients, args.seconds, batch)
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        f"  decisions log={decisions:<4} batch={batch:<4} clients={args.clients}: "
        f"{n / elapsed:>8,.0f} decisions/s   per call p50 {pct(lat, 50):6.2f} ms  "
        f"p95 {pct(lat, 95):6.2f} ms  p99 {pct(lat, 99):6.2f} ms  ({len(lat):,} calls)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20_000, help="distinct requests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        reqs = write_workload(folder, args.scale, args.requests)
        print(f"rune serve, drive workload at scale {args.scale} (Datalog only), loopback HTTP")
        for decisions, batch in (("none", 1), ("all", 1), ("none", args.batch)):
            await run_case(args, folder, reqs, decisions, batch)


if __name__ == "__main__":
    asyncio.run(main())
