"""Kafka end to end: RUNE next to a bare confluent-kafka echo and a bare aiokafka echo, one
broker, one librdkafka load generator, interleaved repetitions, medians.

    deploy/kafka/broker start
    python3 perf/bench_kafka.py --bootstrap 127.0.0.1:9092 [--requests 20000] [--reps 3]

Figures (docs/design.md §6 targets beside them; nothing is asserted):

- burst: ``--requests`` records produced at once into an idle consumer's input topic; the
  rate is records / (when the broker appended the last output record - when the first input
  record was sent). Output topics use ``message.timestamp.type=LogAppendTime``, so every
  time is taken when a record is durable, never when this process gets around to reading
  it (same clock: one machine). Contenders:
  ``rune run --kafka`` (at-least-once), the same with ``kafka.exactly_once``, and the two
  bare echoes of perf/echo.py. Each runs as its own process, as deployed; each repetition
  runs every contender once, in turn, after one unmeasured warm-up burst each.
- latency: requests at ``--rate`` per second for ``--seconds`` (after ``--warm-up-s`` at the
  same rate), request sent -> decision appended, p50/p99; for both RUNE modes (with
  exactly-once, a decision counts once its transaction committed: read_committed), and for
  the bare confluent echo as the baseline (the generator and the broker share the machine).
- freshness: a fact produced, its acknowledgement's offset as the consistency token of a
  request sent right after; fact sent -> decision appended, p50/p99. (Timestamps are
  milliseconds: figures are +-1 ms.)

The last line of stdout is one JSON object with every figure. The machine's 2 cores are
shared by the broker, the contenders and this process, as in any single-host measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from rune.config import Topics
from rune.streams import event_key

HERE = Path(__file__).resolve().parent
BUNDLE = {"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""}
A = {"type": "Action", "id": "read"}
COMPACT = {"cleanup.policy": "compact"}
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def user(i: int) -> dict[str, str]:
    return {"type": "User", "id": f"u{i}"}


def doc(i: int) -> dict[str, str]:
    return {"type": "Doc", "id": f"d{i}"}


def request(rid: str, i: int, **more: Any) -> bytes:
    return orjson.dumps(
        {"id": rid, "principal": user(i % 1000), "action": A, "resource": doc(i % 1000),
         "context": {}, **more}
    )  # fmt: skip


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


# -- topics and clients -------------------------------------------------------------------


def rune_topics(tag: str) -> Topics:
    return Topics(**{role: f"bench.{tag}.{role}" for role in Topics.model_fields})


def create_topics(bootstrap: str, specs: dict[str, tuple[int, dict[str, str]]]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, parts, 1, config=cfg) for name, (parts, cfg) in specs.items()]
    )
    for future in futures.values():
        future.result(30)


def load_producer(bootstrap: str) -> Producer:
    """The load generator (librdkafka, as a client service would produce)."""
    return Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all",
         "partitioner": "murmur2_random", "queue.buffering.max.messages": 1_000_000}
    )  # fmt: skip


def produce_all(producer: Producer, topic: str, values: list[bytes]) -> None:
    for v in values:
        while True:
            try:
                producer.produce(topic, v)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)


class Reader:
    """Reads a topic from its current end in a thread; ``arrivals`` maps an id to when its
    record was read and ``stamps`` to the record's timestamp (ms)."""

    def __init__(self, bootstrap: str, topic: str, *, committed_only: bool = False) -> None:
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex}",
             "enable.auto.commit": False,
             "isolation.level": "read_committed" if committed_only else "read_uncommitted"}
        )  # fmt: skip
        meta = self.consumer.list_topics(topic, timeout=10)
        parts = []
        for p in meta.topics[topic].partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            parts.append(TopicPartition(topic, p, high))
        self.consumer.assign(parts)
        self.arrivals: dict[str, float] = {}
        self.stamps: dict[str, int] = {}
        self.duplicates = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            first = self.consumer.poll(0.05)
            if first is None:
                continue
            now = time.perf_counter()
            for m in [first, *self.consumer.consume(10_000, 0)]:
                if m.error() is not None or m.value() is None:
                    continue
                rid = record_id(m.value())
                if rid in self.arrivals:
                    self.duplicates += 1
                    continue
                self.arrivals[rid] = now
                self.stamps[rid] = m.timestamp()[1]

    def wait_for(self, ids: set[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not ids <= self.arrivals.keys():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.consumer.close()


def record_id(value: bytes) -> str:
    """The id of a decision, or of an echoed request (both carry ``"id"``)."""
    return str(orjson.loads(value)["id"])


# -- contenders -----------------------------------------------------------------------------


class Contender:
    def __init__(self, name: str, source: str, sink: str, argv: list[str], env: dict[str, str],
                 committed_only: bool = False) -> None:  # fmt: skip
        self.name, self.source, self.sink = name, source, sink
        self.argv, self.env, self.committed_only = argv, env, committed_only
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.gettempdir()) / f"bench_kafka.{name}.log"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env={**os.environ, **self.env}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"),
        )  # fmt: skip

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def rune_contender(name: str, bootstrap: str, t: Topics, exactly_once: bool) -> Contender:
    env = {
        "RUNE_KAFKA__BOOTSTRAP": bootstrap,
        "RUNE_KAFKA__GROUP_ID": f"bench-{name}-{t.requests}",
        "RUNE_KAFKA__EXACTLY_ONCE": "true" if exactly_once else "false",
        "RUNE_KAFKA__TRANSACTIONAL_ID": f"bench-{name}-{uuid.uuid4().hex[:8]}",
        "RUNE_LOGGING__DECISIONS": "none",
        "RUNE_LOGGING__LEVEL": "warning",
    }
    for role, topic in t.model_dump().items():
        env[f"RUNE_TOPICS__{role.upper()}"] = topic
    argv = [sys.executable, "-m", "rune.cli", "run", "--kafka", bootstrap]
    return Contender(name, t.requests, t.decisions, argv, env, committed_only=exactly_once)


def echo_contender(client: str, bootstrap: str, source: str, sink: str) -> Contender:
    argv = [sys.executable, str(HERE / "echo.py"), "--client", client, "--bootstrap", bootstrap,
            "--source", source, "--sink", sink]  # fmt: skip
    return Contender(f"{client} echo", source, sink, argv, {})


@contextmanager
def running(contenders: list[Contender], bootstrap: str, producer: Producer) -> Iterator[None]:
    for c in contenders:
        c.start()
    try:
        for c in contenders:  # ready: a probe answered
            reader = Reader(bootstrap, c.sink, committed_only=c.committed_only)
            probe = f"probe-{uuid.uuid4().hex[:8]}"
            produce_all(producer, c.source, [request(probe, 0)])
            if not reader.wait_for({probe}, 120):
                raise SystemExit(f"{c.name} did not answer a probe; see {c.log}")
            reader.close()
        yield
    finally:
        for c in contenders:
            c.stop()


def burst(c: Contender, bootstrap: str, producer: Producer, n: int, tag: str) -> float:
    """Records per second through ``c`` for a burst of ``n`` (client timestamps)."""
    reader = Reader(bootstrap, c.sink, committed_only=c.committed_only)
    ids = [f"{tag}-{i}" for i in range(n)]
    start_ms = time.time() * 1000
    produce_all(producer, c.source, [request(rid, i) for i, rid in enumerate(ids)])
    ok = reader.wait_for(set(ids), 300)
    reader.close()
    if not ok:
        raise SystemExit(f"{c.name}: burst {tag} not fully answered; see {c.log}")
    last = max(reader.stamps[rid] for rid in ids)
    return n / max((last - start_ms) / 1000, 1e-6)


def latency(c: Contender, bootstrap: str, producer: Producer, rate: int, seconds: float,
            warm_s: float) -> dict[str, float]:  # fmt: skip
    reader = Reader(bootstrap, c.sink, committed_only=c.committed_only)
    sent: dict[str, float] = {}  # ms since the epoch
    warm = int(rate * warm_s)
    total = int(rate * seconds)
    tag = uuid.uuid4().hex[:6]
    start = time.perf_counter()
    for i in range(-warm, total):
        delay = start + (i + warm) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        rid = f"l{tag}-{i}"
        if i >= 0:
            sent[rid] = time.time() * 1000
        producer.produce(c.source, request(rid, i))
        producer.poll(0)
    producer.flush(30)
    reader.wait_for(set(sent), 60)
    reader.close()
    lat = [reader.stamps[k] - sent[k] for k in sent if k in reader.stamps]
    return {"answered": len(lat) / max(total, 1), "p50_ms": pct(lat, 0.5),
            "p99_ms": pct(lat, 0.99)}  # fmt: skip


def freshness(c: Contender, bootstrap: str, t: Topics, n: int, rate: float) -> dict[str, float]:
    reader = Reader(bootstrap, c.sink, committed_only=c.committed_only)
    producer = load_producer(bootstrap)
    sent: dict[str, float] = {}  # ms since the epoch
    tag = uuid.uuid4().hex[:6]
    for i in range(n):
        fact = {"op": "assert", "fact": ["ok", user(5000 + i), A, doc(5000 + i)]}
        acked: list[Any] = []
        t0 = time.time() * 1000
        producer.produce(t.facts, orjson.dumps(fact), event_key(fact),
                         on_delivery=lambda err, msg, box=acked: box.append(msg))  # fmt: skip
        producer.flush(10)
        msg = acked[-1]
        token = {"at_least": {t.facts: {str(msg.partition()): msg.offset()}}}
        rid = f"f{tag}-{i}"
        sent[rid] = t0
        producer.produce(t.requests, request(rid, 5000 + i, consistency=token))
        producer.poll(0)
        time.sleep(1 / rate)
    producer.flush(10)
    reader.wait_for(set(sent), 30)
    reader.close()
    fr = [reader.stamps[k] - sent[k] for k in sent if k in reader.stamps]
    return {"answered": len(fr) / max(n, 1), "p50_ms": pct(fr, 0.5), "p99_ms": pct(fr, 0.99)}


# -- the run --------------------------------------------------------------------------------


def seed(producer: Producer, t: Topics) -> None:
    producer.produce(t.policies, orjson.dumps(BUNDLE), b"default")
    for i in range(1000):
        f = {"op": "assert", "fact": ["ok", user(i), A, doc(i)]}
        producer.produce(t.facts, orjson.dumps(f), event_key(f))
    producer.flush(30)


def main(args: argparse.Namespace) -> None:
    bs = args.bootstrap
    tag = uuid.uuid4().hex[:8]
    alo, eos = rune_topics(f"{tag}.alo"), rune_topics(f"{tag}.eos")
    specs: dict[str, tuple[int, dict[str, str]]] = {}
    for t in (alo, eos):
        for role, name in t.model_dump().items():
            single = role in ("policies", "dlq", "state")
            compact = role in ("facts", "policies", "changes", "state")
            config = COMPACT if compact else APPEND_TIME if role == "decisions" else {}
            specs[name] = (1 if single else args.partitions, config)
    echo_topics = {f"bench.{tag}.{c}.{d}": (args.partitions, APPEND_TIME if d == "out" else {})
                   for c in ("confluent", "aiokafka") for d in ("in", "out")}  # fmt: skip
    create_topics(bs, {**specs, **echo_topics})
    producer = load_producer(bs)
    seed(producer, alo)
    seed(producer, eos)
    contenders = [
        echo_contender("confluent", bs, f"bench.{tag}.confluent.in", f"bench.{tag}.confluent.out"),
        echo_contender("aiokafka", bs, f"bench.{tag}.aiokafka.in", f"bench.{tag}.aiokafka.out"),
        rune_contender("rune", bs, alo, exactly_once=False),
        rune_contender("rune exactly-once", bs, eos, exactly_once=True),
    ]
    rates: dict[str, list[float]] = {c.name: [] for c in contenders}
    figures: dict[str, Any] = {"requests": args.requests, "reps": args.reps}
    with running(contenders, bs, producer):
        for c in contenders:  # warm-up, unmeasured
            burst(c, bs, producer, min(args.requests, 5000), f"warm-{uuid.uuid4().hex[:6]}")
        for rep in range(args.reps):
            for c in contenders:
                rate = burst(c, bs, producer, args.requests, f"b{rep}-{uuid.uuid4().hex[:6]}")
                rates[c.name].append(rate)
                print(f"  rep {rep + 1}: {c.name:<18} {rate:>10,.0f} records/s", file=sys.stderr)
        # the bare echo at the same rate: what the machine and broker allow a latency to be
        figures["confluent_echo_latency"] = latency(
            contenders[0], bs, producer, args.rate, args.seconds, args.warm_up_s
        )
        for c in contenders[2:]:
            key = c.name.replace(" ", "_").replace("-", "_")
            figures[f"{key}_latency"] = latency(
                c, bs, producer, args.rate, args.seconds, args.warm_up_s
            )
            t = eos if "exactly" in c.name else alo
            figures[f"{key}_freshness"] = freshness(c, bs, t, args.fresh, args.fresh_rate)
    med = {name: statistics.median(r) for name, r in rates.items()}
    figures["burst_median_per_s"] = med
    figures["burst_all_per_s"] = rates
    echo = med["confluent echo"]
    print(f"burst of {args.requests:,} requests, median of {args.reps} interleaved runs:")
    for name, rate in med.items():
        print(f"  {name:<18} {rate:>10,.0f}/s  {rate / echo:5.2f} x confluent echo")
    print("  targets: rune >= 0.7 x confluent echo (aim 0.9)")
    lat = figures["confluent_echo_latency"]
    print(
        f"confluent echo: request->echo at {args.rate:,}/s p50 {lat['p50_ms']:.1f} ms "
        f"p99 {lat['p99_ms']:.1f} ms (the baseline of the latency below)"
    )
    for mode in ("rune", "rune_exactly_once"):
        lat, fr = figures[f"{mode}_latency"], figures[f"{mode}_freshness"]
        print(
            f"{mode}: request->decision at {args.rate:,}/s p50 {lat['p50_ms']:.1f} ms "
            f"p99 {lat['p99_ms']:.1f} ms (target p99 <= 10); fact->decision with token "
            f"p50 {fr['p50_ms']:.1f} ms p99 {fr['p99_ms']:.1f} ms (target p99 <= 20)"
        )
    figures["ratio_rune_to_confluent_echo"] = med["rune"] / echo
    figures["ratio_rune_exactly_once_to_confluent_echo"] = med["rune exactly-once"] / echo
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--rate", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warm-up-s", type=float, default=0.5)
    p.add_argument("--fresh", type=int, default=200)
    p.add_argument("--fresh-rate", type=float, default=200.0)
    main(p.parse_args())
