"""Memory of embedded ``rune serve`` under a long stream of decisions.

    python3 perf/bench_embedded.py                    # 1M decisions (2-4 min)
    python3 perf/bench_embedded.py --decisions 100000 # quick look
    python3 perf/bench_embedded.py --in-process       # the log alone: produce cost, RSS

Starts ``python3 -m rune.cli serve --port P`` (embedded log, the bundled example) as its own
process, posts lists of ``--batch`` requests to ``POST /v1/authorize`` from ``--clients``
concurrent client tasks until ``--decisions`` decisions came back, samples the server's RSS
(``/proc/<pid>/statm``) every ``--every`` seconds, and prints a timeline plus start (ready,
before load) / peak / end RSS and decisions/s. Requests carry no id, so every decision gets a
fresh ``http-<uuid>`` id, as in a service whose clients leave ids to it. ``--env KEY=VALUE``
passes settings (``RUNE_EMBEDDED_LOG__RETENTION_BYTES=...``). Prints figures; asserts
nothing. Both processes share the machine's cores.

``--in-process`` measures the log alone, in this process: ``--decisions`` decision-like
records (fresh ``orjson.dumps`` values, keyed by id, 3 partitions) produced in batches of
``--batch``; prints the produce cost per record (wall and CPU) and the RSS growth per
record (``--keep-all``: with retention lifted). Without ``--keep-all`` it uses only the API
the log had before retention, to compare versions (run it from the old tree: ``python3 -m``
and scripts put the current directory first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from importlib import resources

import aiohttp
import orjson

PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def body(batch: int) -> bytes:
    """``batch`` requests cycled from the bundled example's valid ones, without ids."""
    lines = (resources.files("rune") / "examples" / "drive" / "requests.jsonl").read_bytes()
    examples = [orjson.loads(line) for line in lines.splitlines() if line.strip()]
    examples = [e for e in examples if isinstance(e.get("principal"), dict)]
    for e in examples:
        e.pop("id", None)
    return orjson.dumps([examples[i % len(examples)] for i in range(batch)])


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


async def drive(url: str, args: argparse.Namespace, progress: list[int]) -> float:
    """Post until ``args.decisions`` decisions came back; returns the elapsed seconds."""
    payload = body(args.batch)
    calls = -(-args.decisions // args.batch)
    next_call = 0

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal next_call
        while next_call < calls:
            next_call += 1
            async with session.post(f"{url}/v1/authorize", data=payload) as r:
                answer = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"authorize answered {r.status}: {answer[:200]!r}")
            progress[0] += args.batch

    conn = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(connector=conn) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(args.clients)))
        return time.perf_counter() - start


async def sample(pid: int, every: float, progress: list[int], out: list[tuple[float, int, int]],
                 stop: asyncio.Event) -> None:  # fmt: skip
    t0 = time.perf_counter()
    while not stop.is_set():
        out.append((time.perf_counter() - t0, progress[0], rss(pid)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
    out.append((time.perf_counter() - t0, progress[0], rss(pid)))


async def in_process(args: argparse.Namespace) -> None:
    from rune.connectors.base import Outgoing
    from rune.connectors.embedded import EmbeddedLog

    if args.keep_all:  # retention lifted: what storing every record costs
        from rune.connectors.embedded import Retention

        log = EmbeddedLog(Retention().unbounded())
    else:
        log = EmbeddedLog()
    log.create_topic("rune.decisions", 3)
    decision = {
        "id": "",
        "decision": "allow",
        "reasons": ["readers"],
        "errors": [],
        "policy_version": 1,
        "watermark": {"rune.facts": {"0": 12, "1": 40, "2": 7}, "rune.policies": {"0": 0}},
        "latency_us": 41,
    }
    wall = cpu = 0.0
    before = rss(os.getpid())
    for start in range(0, args.decisions, args.batch):
        batch = []
        for i in range(start, start + args.batch):
            key = f"http-{i:032x}".encode()
            decision["id"] = key.decode()
            batch.append(Outgoing("rune.decisions", key, orjson.dumps(decision)))
        t, c = time.perf_counter(), time.process_time()
        await log.produce(batch)
        wall += time.perf_counter() - t
        cpu += time.process_time() - c
    grown = rss(os.getpid()) - before
    n = args.decisions
    print(f"EmbeddedLog.produce, {n:,} decision records of {len(orjson.dumps(decision))} bytes")
    print(
        f"  produce {wall / n * 1e6:.2f} us/record wall, {cpu / n * 1e6:.2f} us CPU; "
        f"RSS +{grown / MB:.0f} MB ({grown / n:,.0f} B/record); "
        f"{len(log.records('rune.decisions')):,} records stored"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100, help="requests per POST")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client tasks")
    parser.add_argument("--every", type=float, default=0.5, help="RSS sampling period, s")
    parser.add_argument("--rows", type=int, default=20, help="timeline rows printed")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server")
    parser.add_argument("--in-process", action="store_true", help="the log alone, no server")
    parser.add_argument("--keep-all", action="store_true", help="--in-process without retention")
    args = parser.parse_args()
    if args.in_process:
        await in_process(args)
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "RUNE_LOGGING__DECISIONS": "none",
        "RUNE_SERVER__RATE_LIMIT_PER_S": "0",
        **dict(kv.split("=", 1) for kv in args.env),
    }
    cmd = [sys.executable, "-m", "rune.cli", "serve", "--port", str(port)]
    progress = [0]
    samples: list[tuple[float, int, int]] = []
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, env=env, stderr=devnull)
        try:
            await wait_ready(url, proc)
            start_rss = rss(proc.pid)
            stop = asyncio.Event()
            sampler = asyncio.create_task(sample(proc.pid, args.every, progress, samples, stop))
            elapsed = await drive(url, args, progress)
            stop.set()
            await sampler
        finally:
            proc.terminate()
            proc.wait(30)
    print(
        f"embedded rune serve, {progress[0]:,} decisions "
        f"({args.clients} clients x {args.batch} requests per POST)"
    )
    print(f"{'t (s)':>8} {'decisions':>11} {'RSS (MB)':>9}")
    rows = samples[:: max(1, len(samples) // args.rows)]
    if rows[-1] is not samples[-1]:
        rows.append(samples[-1])
    for t, n, r in rows:
        print(f"{t:8.1f} {n:11,} {r / MB:9.0f}")
    peak = max(r for _, _, r in samples)
    print(
        f"RSS start {start_rss / MB:.0f} MB, peak {peak / MB:.0f} MB, "
        f"end {samples[-1][2] / MB:.0f} MB; {progress[0] / elapsed:,.0f} decisions/s "
        f"over {elapsed:.1f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
