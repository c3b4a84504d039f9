"""Kafka end to end: decisions/s vs a bare aiokafka consume->produce echo (same run), request
-> decision latency at a fixed rate, fact -> decision freshness with consistency tokens.

    deploy/kafka/broker start
    python3 perf/bench_kafka.py --bootstrap 127.0.0.1:9092 [--requests 20000] [--rate 5000]

Prints figures (DESIGN.md §6 targets beside them); asserts nothing. The service runs as
``rune serve --kafka`` in its own process, as deployed; the echo, the load generator and the
decision reader run in this one. Both compete for the machine's 2 cores, as a client would.
``--in-process`` runs the service on this process's event loop instead (the layout of the
first version of this benchmark, kept for comparison: there the load generator and the
service also share one event loop, which inflates latency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from rune.config import Topics, load_settings
from rune.connectors.kafka import KafkaLog
from rune.streams import Service, event_key

BUNDLE = {"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""}
A = {"type": "Action", "id": "read"}


def user(i: int) -> dict[str, str]:
    return {"type": "User", "id": f"u{i}"}


def doc(i: int) -> dict[str, str]:
    return {"type": "Doc", "id": f"d{i}"}


def request(rid: str, i: int, **kw: Any) -> bytes:
    return orjson.dumps(
        {
            "id": rid,
            "principal": user(i % 1000),
            "action": A,
            "resource": doc(i % 1000),
            "context": {},
            **kw,
        }
    )


async def topics(bootstrap: str, partitions: int) -> Topics:
    tag = uuid.uuid4().hex[:8]
    t = Topics(**{role: f"bench.{tag}.{role}" for role in Topics.model_fields})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    compact = {"cleanup.policy": "compact"}
    await admin.create_topics(
        [
            NewTopic(t.facts, partitions, 1, topic_configs=compact),
            NewTopic(t.policies, 1, 1, topic_configs=compact),
            NewTopic(t.requests, partitions, 1),
            NewTopic(t.decisions, partitions, 1),
            NewTopic(t.changes, partitions, 1, topic_configs=compact),
            NewTopic(t.dlq, 1, 1),
            NewTopic(f"bench.{tag}.echo-in", partitions, 1),
            NewTopic(f"bench.{tag}.echo-out", partitions, 1),
        ]
    )
    await admin.close()
    return t


async def produce_all(producer: AIOKafkaProducer, topic: str, values: list[bytes]) -> None:
    futures = [await producer.send(topic, v) for v in values]
    await asyncio.gather(*futures)


async def echo(bootstrap: str, src: str, dst: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=bootstrap,
        group_id=f"echo-{src}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=2
    )
    await consumer.start()
    await producer.start()
    done = 0
    start = time.perf_counter()
    while done < n:
        batches = await consumer.getmany(timeout_ms=100, max_records=1000)
        futures = [
            await producer.send(dst, r.value, key=r.key) for rs in batches.values() for r in rs
        ]
        await asyncio.gather(*futures)
        if futures:
            await consumer.commit()
        done += len(futures)
    elapsed = time.perf_counter() - start
    await consumer.stop()
    await producer.stop()
    return n / elapsed


async def main(args: argparse.Namespace) -> None:
    bs = args.bootstrap
    t = await topics(bs, args.partitions)
    tag = t.facts.split(".")[1]
    producer = AIOKafkaProducer(bootstrap_servers=bs, acks="all", linger_ms=args.client_linger_ms)
    await producer.start()
    await producer.send_and_wait(t.policies, orjson.dumps(BUNDLE), key=b"b")
    facts = [{"op": "assert", "fact": ["ok", user(i), A, doc(i)]} for i in range(1000)]
    futures = [await producer.send(t.facts, orjson.dumps(f), key=event_key(f)) for f in facts]
    await asyncio.gather(*futures)

    n = args.requests
    values = [request(f"t{i}", i) for i in range(n)]
    await produce_all(producer, f"bench.{tag}.echo-in", values)
    echo_rate = await echo(bs, f"bench.{tag}.echo-in", f"bench.{tag}.echo-out", n)

    await produce_all(producer, t.requests, values)
    async with running_service(args, t, tag) as decided:
        start = time.perf_counter()
        while await decided() < n:
            await asyncio.sleep(0.005)
        rune_rate = n / (time.perf_counter() - start)
        print(
            f"throughput: echo {echo_rate:,.0f} msg/s, rune {rune_rate:,.0f} decisions/s, "
            f"ratio {rune_rate / echo_rate:.2f} (target >= 0.7)"
        )
        await measure_latency(args, t, tag, producer)
    await producer.stop()


@contextlib.asynccontextmanager
async def running_service(args: argparse.Namespace, t: Topics, tag: str) -> AsyncIterator[Any]:
    """The service, ready; yields an async ``decided()`` giving the decisions made so far."""
    settings = {
        "kafka": {"bootstrap": args.bootstrap, "group_id": f"bench-{tag}"},
        "topics": t.model_dump(),
        "logging": {"decisions": "none"},
        "server": {"rate_limit_per_s": 0},
    }
    if args.in_process:
        svc = Service(load_settings(None, settings), KafkaLog(args.bootstrap), notice=print)
        task = asyncio.create_task(svc.run())
        await svc.ctx.ready.wait()

        async def decided_here() -> int:
            return svc.ctx.stats.decisions

        try:
            yield decided_here
        finally:
            svc.stop()
            await task
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ}
    for section, values in settings.items():
        for key, value in values.items():
            env[f"RUNE_{section.upper()}__{key.upper()}"] = str(value)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rune.cli", "serve", "--port", str(port)],
        env=env,
        stderr=open(args.service_log, "wb") if args.service_log else subprocess.DEVNULL,  # noqa: SIM115
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:

        async def decided_there() -> int:
            async with http.get(f"{url}/metrics") as resp:
                text = await resp.text()
            return int(
                sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("authorization_requests_total{")
                )
            )

        try:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"rune serve exited with {proc.returncode}")
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(f"{url}/health/ready") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
            spy = None
            if args.profile:  # sample the service during the throughput phase
                spy = subprocess.Popen(
                    [
                        *("py-spy", "record", "-p", str(proc.pid), "-f", "raw", "-r", "500"),
                        *("--nonblocking", "-o", args.profile),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                await asyncio.sleep(0.5)  # let it attach
            yield decided_there
        finally:
            if spy is not None and spy.poll() is None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            proc.terminate()
            proc.wait(30)


async def measure_latency(
    args: argparse.Namespace, t: Topics, tag: str, producer: AIOKafkaProducer
) -> None:
    bs = args.bootstrap

    # latency at a fixed rate, and freshness with tokens
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    reader = AIOKafkaConsumer(
        t.decisions,
        bootstrap_servers=bs,
        auto_offset_reset="latest",
        group_id=f"bench-reader-{tag}",
    )
    await reader.start()
    while not reader.assignment():
        await reader.getmany(timeout_ms=100)
    for tp in reader.assignment():  # resolve "latest" now, not on the first decision
        await reader.position(tp)

    async def collect(stop: asyncio.Event) -> None:
        while not stop.is_set() or len(got) < len(sent):
            for rs in (await reader.getmany(timeout_ms=50)).values():
                now = time.perf_counter()
                for r in rs:
                    rid = orjson.loads(r.value)["id"]
                    if rid in sent:
                        got.setdefault(rid, now)
            if stop.is_set() and time.perf_counter() > stop_at + 10:
                return

    stop = asyncio.Event()
    stop_at = float("inf")
    collector = asyncio.create_task(collect(stop))
    warm = int(args.rate * args.warm_up_s)  # same rate, not measured: idle -> busy transition
    total = int(args.rate * args.seconds)
    start = time.perf_counter()
    for i in range(-warm, total):
        delay = start + (i + warm) / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        rid = f"l{i}" if i >= 0 else f"w{-i}"
        if i >= 0:
            sent[rid] = time.perf_counter()
        await producer.send(t.requests, request(rid, i))
    t0 = start + warm / args.rate  # the measured window starts here
    await producer.flush()
    # freshness: a fact change, then a request with its token
    fresh: list[str] = []
    for i in range(args.fresh):
        f = {"op": "assert", "fact": ["ok", user(5000 + i), A, doc(5000 + i)]}
        sent_at = time.perf_counter()
        meta = await producer.send_and_wait(t.facts, orjson.dumps(f), key=event_key(f))
        rid = f"f{i}"
        sent[rid] = sent_at
        fresh.append(rid)
        token = {"at_least": {t.facts: {str(meta.partition): meta.offset}}}
        await producer.send(t.requests, request(rid, 5000 + i, consistency=token))
        await asyncio.sleep(1 / args.fresh_rate)
    stop_at = time.perf_counter()
    stop.set()
    await collector
    lat = sorted((got[k] - sent[k]) * 1000 for k in sent if k.startswith("l") and k in got)
    if args.timeline:  # p99 per quarter second of sending: are slow requests clustered?
        windows: dict[int, list[float]] = {}
        for k in sent:
            if k.startswith("l") and k in got:
                windows.setdefault(int((sent[k] - t0) * 4), []).append((got[k] - sent[k]) * 1e3)
        first = [f"{(got[f'l{i}'] - sent[f'l{i}']) * 1e3:.0f}" for i in range(0, 40, 2)]
        print("  first requests (ms):", " ".join(first))
        print(
            "  p99 per 250 ms:",
            " ".join(
                f"{max(sorted(w)[int(0.99 * len(w))], 0):.0f}" for _, w in sorted(windows.items())
            ),
        )
    fr = sorted((got[k] - sent[k]) * 1000 for k in fresh if k in got)

    def pct(xs: list[float], q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    print(
        f"latency at {args.rate:,}/s for {args.seconds}s: {len(lat)}/{total} answered, "
        f"p50 {pct(lat, 0.5):.1f} ms, p99 {pct(lat, 0.99):.1f} ms (target p99 <= 10 ms)"
    )
    print(
        f"freshness fact->decision with token ({len(fr)}/{len(fresh)}): p50 "
        f"{pct(fr, 0.5):.1f} ms, p99 {pct(fr, 0.99):.1f} ms (target p99 <= 20 ms)"
        + (f", mean {statistics.mean(fr):.1f} ms" if fr else "")
    )
    await reader.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--fresh", type=int, default=200)
    p.add_argument("--fresh-rate", type=float, default=200.0)
    p.add_argument("--in-process", action="store_true", help="service on this event loop")
    p.add_argument("--timeline", action="store_true", help="latency p99 per 250 ms window")
    p.add_argument("--service-log", metavar="FILE", help="where the service's stderr goes")
    p.add_argument(
        "--profile", metavar="FILE", help="py-spy raw profile of the service (pip install py-spy)"
    )
    p.add_argument(
        "--warm-up-s",
        type=float,
        default=0.5,
        help="seconds of load at --rate before the measured window (its latencies are dropped)",
    )
    p.add_argument(
        "--client-linger-ms",
        type=int,
        default=0,
        help="linger of the load generator's producer (was 5 in the first version)",
    )
    asyncio.run(main(p.parse_args()))
