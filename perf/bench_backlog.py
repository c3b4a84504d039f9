"""A backlog after an outage: ``--facts`` fact events and ``--requests`` requests are queued
while the service is down; then ``rune run --kafka`` starts. Prints how long catching up the
facts took (start -> first decision), how long until every request was answered, the rate of
each phase, and the service's resident memory sampled every 100 ms (peak and at the end) —
memory must stay bounded whatever the backlog (no queue of decoded requests).

    python3 perf/bench_kafka.py ...   # same broker
    python3 perf/bench_backlog.py --bootstrap 127.0.0.1:9092 [--facts 50000] [--requests 100000]

The last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_kafka as bk

from rune.streams import event_key


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(args: argparse.Namespace) -> None:
    bs = args.bootstrap
    t = bk.rune_topics(f"{uuid.uuid4().hex[:8]}.backlog")
    specs: dict[str, tuple[int, dict[str, str]]] = {}
    for role, name in t.model_dump().items():
        single = role in ("policies", "dlq", "state")
        compact = role in ("facts", "policies", "changes", "state")
        config = bk.COMPACT if compact else bk.APPEND_TIME if role == "decisions" else {}
        specs[name] = (1 if single else args.partitions, config)
    bk.create_topics(bs, specs)
    producer = bk.load_producer(bs)
    producer.produce(t.policies, orjson.dumps(bk.BUNDLE), b"default")
    start = time.perf_counter()
    for i in range(args.facts):
        f = {"op": "assert", "fact": ["ok", bk.user(i), bk.A, bk.doc(i)]}
        while True:
            try:
                producer.produce(t.facts, orjson.dumps(f), event_key(f))
                break
            except BufferError:
                producer.poll(0.01)
    ids = [f"b{i}" for i in range(args.requests)]
    bk.produce_all(producer, t.requests, [bk.request(rid, i) for i, rid in enumerate(ids)])
    print(f"queued in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    reader = bk.Reader(bs, t.decisions)
    service = bk.rune_contender("rune", bs, t, exactly_once=False)
    samples: list[float] = []
    stop = threading.Event()
    service.start()
    assert service.proc is not None
    pid = service.proc.pid

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.time()
    try:
        first = None
        while first is None:
            if reader.stamps:
                first = min(reader.stamps.values()) / 1000
            elif service.proc.poll() is not None:
                raise SystemExit(f"rune exited; see {service.log}")
            time.sleep(0.05)
        if not reader.wait_for(set(ids), 600):
            raise SystemExit(f"not every request answered; see {service.log}")
        last = max(reader.stamps.values()) / 1000
        end_rss = rss_mb(pid)
    finally:
        stop.set()
        sampler.join()
        reader.close()
        service.stop()
    facts_s, requests_s = first - t0, last - first
    figures = {
        "facts": args.facts,
        "requests": args.requests,
        "catch_up_facts_s": facts_s,
        "answer_requests_s": requests_s,
        "facts_per_s_incl_start": args.facts / facts_s,
        "requests_per_s": args.requests / requests_s,
        "rss_peak_mb": max(samples),
        "rss_end_mb": end_rss,
        "duplicates": reader.duplicates,
    }
    print(
        f"start -> first decision {facts_s:.1f} s ({args.facts:,} facts, process start "
        f"included); all {args.requests:,} requests answered {requests_s:.1f} s later "
        f"({figures['requests_per_s']:,.0f}/s); RSS peak {max(samples):.0f} MB, at the end "
        f"{end_rss:.0f} MB"
    )
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--facts", type=int, default=50_000)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--partitions", type=int, default=3)
    main(p.parse_args())
