"""Bare consume -> produce echoes, the baselines of perf/bench_kafka.py (run as processes).

    python3 perf/echo.py --client confluent|aiokafka --bootstrap B --source IN --sink OUT

Each copies every record of IN to OUT (same key and value) as fast as its client allows, with
the producer settings RUNE uses (idempotent, acks=all, linger 1 ms) and a consumer group
(committed offsets, auto-commit off, committed every 100 ms without waiting for the copies:
the cheapest correct-enough loop a Python service can run). It stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from typing import Any


def confluent_echo(args: argparse.Namespace, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, Producer

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 1,
        }
    )
    consumer.subscribe([args.source])
    produce = producer.produce
    last_commit = time.monotonic()
    while not stop.is_set():
        first = consumer.poll(0.05)
        if first is None:
            producer.poll(0)
            continue
        for m in [first, *consumer.consume(999, 0)]:
            if m.error() is None:
                while True:
                    try:
                        produce(args.sink, m.value(), m.key())
                        break
                    except BufferError:
                        producer.poll(0.01)
        producer.poll(0)
        if time.monotonic() - last_commit > 0.1:
            consumer.commit(asynchronous=True)
            last_commit = time.monotonic()
    producer.flush(10)
    consumer.close()


async def aiokafka_echo(args: argparse.Namespace, stop: threading.Event) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        args.source,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, enable_idempotence=True, acks="all", linger_ms=1
    )
    await consumer.start()
    await producer.start()
    last_commit = time.monotonic()
    pending: list[Any] = []
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=50, max_records=1000)
        for records in batches.values():
            for r in records:
                pending.append(await producer.send(args.sink, r.value, key=r.key))
        if len(pending) > 10_000:
            await asyncio.gather(*pending)
            pending.clear()
        if time.monotonic() - last_commit > 0.1:
            await consumer.commit()
            last_commit = time.monotonic()
    await asyncio.gather(*pending)
    await producer.stop()
    await consumer.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--client", choices=("confluent", "aiokafka"), required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--sink", required=True)
    p.add_argument("--group", default=None)
    args = p.parse_args()
    args.group = args.group or f"echo-{args.source}"
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.client == "confluent":
        confluent_echo(args, stop)
    else:
        asyncio.run(aiokafka_echo(args, stop))


if __name__ == "__main__":
    main()
