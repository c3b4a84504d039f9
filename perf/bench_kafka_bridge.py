"""How librdkafka meets the event loop: RUNE's connector (a thread per consumer handing
batches to the loop, a thread serving delivery reports resolved per batch) against
confluent-kafka's own asyncio API (``confluent_kafka.aio``: every call dispatched to a thread
pool, a future per produced record), as an async consume -> produce echo on one broker.

    python3 perf/bench_kafka_bridge.py --bootstrap 127.0.0.1:9092 [--records 50000] [--reps 3]

Prints records/s per bridge (median of interleaved repetitions) and the CPU seconds the
process spent per 1000 records; the last line is JSON. docs/streaming.md says which one RUNE
kept and why.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from rune.connectors.base import Outgoing
from rune.connectors.kafka import KafkaLog, KafkaOptions


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def fill(bootstrap: str, topic: str, n: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        while True:
            try:
                p.produce(topic, orjson.dumps({"id": f"r{i}", "pad": "x" * 100}))
                break
            except BufferError:
                p.poll(0.01)
    p.flush(60)


async def rune_echo(bootstrap: str, src: str, dst: str, n: int) -> float:
    log = KafkaLog(KafkaOptions(bootstrap))
    await log.start()
    reader = await log.subscribe(src, f"bridge-{uuid.uuid4().hex}", batch=1000)
    done = 0
    start = 0.0
    pending: set[asyncio.Task[None]] = set()
    while done < n:
        records = await reader.fetch(1000, 0.1)
        if not records:
            continue
        start = start or time.perf_counter()
        out = [Outgoing(dst, r.key, r.value) for r in records]
        task = asyncio.create_task(log.send(out))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if len(pending) >= 8:
            await asyncio.wait(pending, return_when="FIRST_COMPLETED")
        done += len(records)
    await asyncio.gather(*pending)
    elapsed = time.perf_counter() - start
    await log.close()
    return n / elapsed


async def aio_echo(bootstrap: str, src: str, dst: str, n: int) -> float:
    from confluent_kafka.aio import AIOConsumer, AIOProducer

    consumer = AIOConsumer(
        {"bootstrap.servers": bootstrap, "group.id": f"bridge-{uuid.uuid4().hex}",
         "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )  # fmt: skip
    producer = AIOProducer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
         "linger.ms": 1}
    )  # fmt: skip
    await consumer.subscribe([src])
    done = 0
    start = 0.0
    futures: list[Any] = []
    while done < n:
        first = await consumer.poll(0.1)
        if first is None:
            continue
        start = start or time.perf_counter()
        messages = [first, *(await consumer.consume(999, 0))]
        for m in messages:
            if m.error() is None:
                futures.append(await producer.produce(dst, m.value(), m.key()))
                done += 1
        if len(futures) > 8000:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - start
    await producer.close()
    await consumer.close()
    return n / elapsed


async def main(args: argparse.Namespace) -> None:
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    tag = uuid.uuid4().hex[:8]
    names = [f"bridge.{tag}.{k}.{d}.{r}" for k in ("rune", "aio") for d in ("in", "out")
             for r in range(args.reps)]  # fmt: skip
    for f in admin.create_topics([NewTopic(t, 3, 1) for t in names]).values():
        f.result(30)
    rates: dict[str, list[float]] = {"rune": [], "aio": []}
    cpu: dict[str, list[float]] = {"rune": [], "aio": []}
    for rep in range(args.reps):
        for kind, echo in (("rune", rune_echo), ("aio", aio_echo)):
            src, dst = f"bridge.{tag}.{kind}.in.{rep}", f"bridge.{tag}.{kind}.out.{rep}"
            fill(args.bootstrap, src, args.records)
            before = cpu_s()
            rates[kind].append(await echo(args.bootstrap, src, dst, args.records))
            cpu[kind].append((cpu_s() - before) / args.records * 1000)
            print(f"  rep {rep + 1} {kind:<5} {rates[kind][-1]:>10,.0f} records/s")
    figures = {
        kind: {"per_s": statistics.median(rates[kind]), "cpu_s_per_1000": statistics.median(
            cpu[kind])} for kind in rates
    }  # fmt: skip
    for kind, f in figures.items():
        print(f"{kind:<5} {f['per_s']:>10,.0f} records/s  {f['cpu_s_per_1000'] * 1000:.1f} ms CPU "
              "per 1000 records")  # fmt: skip
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--reps", type=int, default=3)
    asyncio.run(main(p.parse_args()))
