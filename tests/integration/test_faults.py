"""Faults of the Kafka path against real brokers: bursts, a backlog after an outage, a broker
SIGKILLed and restarted, a broker away for a minute, and exactly-once decisions across a
SIGKILL of the service. The service runs as its own process throughout and must neither exit
nor lose a request.

The broker tests use a broker of their own (``deploy/kafka/broker`` on free ports, restarted
with ``restart`` so its data survives), so the shared broker of the other tests is never
disturbed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import AdminClient

from rune.config import Topics
from rune.streams import event_key
from tests.integration.conftest import BROKER_SCRIPT
from tests.integration.processes import (
    Client,
    Rune,
    create_topics,
    delete_topics,
    free_port,
    request,
    wait_until,
)

BUNDLE = {"version": 1, "datalog": "allow(P, A, R) :- ok(P, A, R).", "cedar": ""}


def ok(i: int) -> dict[str, Any]:
    return {
        "op": "assert",
        "fact": [
            "ok",
            {"type": "User", "id": f"u{i}"},
            {"type": "Action", "id": "read"},
            {"type": "Doc", "id": f"d{i}"},
        ],
    }


def requests(prefix: str, n: int, users: int = 1000) -> list[dict[str, Any]]:
    return [request(f"{prefix}-{i}", f"u{i % users}", "read", f"d{i % users}") for i in range(n)]


def send_requests(c: Client, reqs: list[dict[str, Any]]) -> None:
    c.send_many(c.topics.requests, ((None, orjson.dumps(r)) for r in reqs))


@dataclass
class Broker:
    """A broker of this module's own."""

    env: dict[str, str]
    address: str

    def run(self, command: str) -> None:
        result = subprocess.run(
            [str(BROKER_SCRIPT), command], env=self.env, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=600, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    def pid(self) -> int:
        return int((Path(self.env["RUNE_KAFKA_RUN"]) / "broker.pid").read_text())

    def kill(self) -> None:
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 30, "broker gone")


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    port = free_port()
    env = {
        **os.environ,
        "RUNE_KAFKA_START_TIMEOUT": "180",  # a restart after SIGKILL recovers its logs first
        "RUNE_KAFKA_PORT": str(port),
        "RUNE_KAFKA_CONTROLLER_PORT": str(free_port()),
        "RUNE_KAFKA_RUN": str(tmp_path_factory.mktemp("broker") / "run"),
    }
    b = Broker(env, f"127.0.0.1:{port}")
    b.run("start")
    try:
        yield b
    finally:
        subprocess.run([str(BROKER_SCRIPT), "stop"], env=env, capture_output=True, check=False)


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    made = create_topics(kafka_bootstrap, partitions=3)
    yield made
    delete_topics(kafka_bootstrap, made)


def seeded(bootstrap: str, topics: Topics, facts: int = 1000) -> Client:
    c = Client(bootstrap, topics)
    c.bundle(BUNDLE)
    c.send_many(topics.facts, ((event_key(ok(i)), orjson.dumps(ok(i))) for i in range(facts)))
    return c


def answered(
    c: Client, reqs: list[dict[str, Any]], deadline_s: float = 120, facts: int = 1000
) -> None:
    """Every request has a decision, and each says what the facts ``ok(i)`` for ``i`` below
    ``facts`` say."""
    got = c.decisions([r["id"] for r in reqs], deadline_s)
    for r in reqs:
        user, doc = int(r["principal"]["id"][1:]), int(r["resource"]["id"][1:])
        want = "allow" if user == doc < facts else "deny"
        assert {d["decision"] for d in got[r["id"]]} == {want}, (r, got[r["id"]])


def test_three_bursts_of_20000_requests_leave_the_service_running(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = seeded(kafka_bootstrap, topics)
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log").start()
    try:
        rune.wait_ready()
        for burst in range(3):
            reqs = requests(f"burst{burst}", 20_000)
            send_requests(c, reqs)  # as fast as librdkafka produces them
            answered(c, reqs)
            assert rune.alive(), rune.tail()
    finally:
        assert rune.stop() == 0, rune.tail()


def test_a_backlog_after_an_outage_is_caught_up_with_every_request_answered(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = seeded(kafka_bootstrap, topics, facts=50_000)  # queued while the service is down
    reqs = requests("backlog", 100_000, users=60_000)  # some users have no fact: deny
    send_requests(c, reqs)
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log").start()
    try:
        answered(c, reqs, deadline_s=300, facts=50_000)
        assert rune.alive(), rune.tail()
    finally:
        assert rune.stop() == 0, rune.tail()


def test_a_broker_killed_and_restarted_mid_stream_loses_no_request(
    broker: Broker, tmp_path: Path
) -> None:
    topics = create_topics(broker.address, partitions=2)
    c = seeded(broker.address, topics)
    rune = Rune(broker.address, topics, tmp_path / "rune.log", http=True).start()
    try:
        rune.wait_ready()
        before = requests("before-kill", 2000)
        send_requests(c, before)
        broker.kill()
        wait_until(lambda: rune.get("/health/ready")[0] == 503, 60, "not ready without a broker")
        assert rune.get("/health/live")[0] == 200
        broker.run("restart")
        after = requests("after-restart", 2000)
        c = Client(broker.address, topics)
        send_requests(c, after)
        answered(c, before + after, deadline_s=300)  # the group may wait out a session first
        rune.wait_ready()
        status, body = rune.get("/health/live")
        assert status == 200 and body["pid"] == rune.pid  # the same process throughout
    finally:
        assert rune.stop() == 0, rune.tail()


def test_a_broker_away_for_a_minute_is_waited_out(broker: Broker, tmp_path: Path) -> None:
    topics = create_topics(broker.address, partitions=2)
    c = seeded(broker.address, topics)
    rune = Rune(broker.address, topics, tmp_path / "rune.log", http=True).start()
    try:
        rune.wait_ready()
        before = requests("before-outage", 1000)
        send_requests(c, before)
        answered(c, before)
        broker.run("stop")
        away_until = time.monotonic() + 60
        wait_until(lambda: rune.get("/health/ready")[0] == 503, 60, "not ready without a broker")
        assert rune.get("/health/ready")[1]["status"] == "log_unavailable"
        http_request = request("during-outage", "alice", "read", "doc-1")
        status, body = rune.post("/v1/authorize", http_request)  # answered, not left hanging
        assert status == 503 and body["error"]["type"] == "log_unavailable", body
        while time.monotonic() < away_until:  # a minute without a broker
            assert rune.alive(), rune.tail()
            assert rune.get("/health/live")[0] == 200
            time.sleep(1)
        broker.run("restart")
        rune.wait_ready(120)
        after = requests("after-outage", 1000)
        c = Client(broker.address, topics)
        send_requests(c, after)
        answered(c, after)
        assert rune.get("/health/live")[1]["pid"] == rune.pid
    finally:
        assert rune.stop() == 0, rune.tail()


def test_exactly_once_decisions_across_a_sigkill(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    c = seeded(kafka_bootstrap, topics)
    eos = {"kafka": {"exactly_once": True, "transactional_id": f"eos-{topics.requests}"}}
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log", settings=eos).start()
    reqs = requests("eos", 40_000)
    try:
        rune.wait_ready()
        send_requests(c, reqs[:20_000])
        # kill it while it answers: some decisions committed, others in flight
        wait_until(lambda: len(c.read(topics.decisions, committed_only=True)) > 500, 60, "progress")
        rune.kill()
        send_requests(c, reqs[20_000:])  # queued while no instance runs
        rune = Rune(kafka_bootstrap, topics, tmp_path / "rune2.log", settings=eos).start()
        rune.wait_ready(180)  # a new instance took over (and fenced the dead one's transaction)
        got = c.decisions([r["id"] for r in reqs], 180, committed_only=True)
        counts = {rid: len(ds) for rid, ds in got.items() if rid.startswith("eos-")}
        assert set(counts) == {r["id"] for r in reqs}
        assert set(counts.values()) == {1}, {k: v for k, v in counts.items() if v != 1}
    finally:
        assert rune.stop() == 0, rune.tail()


def test_a_fenced_producer_stops_the_zombie_with_its_cause(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """Two instances with one transactional id: the second fences the first, which stops
    (exit 1, the cause in its log) instead of writing decisions it may no longer write."""
    c = seeded(kafka_bootstrap, topics)
    eos = {"kafka": {"exactly_once": True, "transactional_id": f"zombie-{topics.requests}"}}
    first = Rune(kafka_bootstrap, topics, tmp_path / "first.log", settings=eos).start()
    second: Rune | None = None
    try:
        first.wait_ready()
        second = Rune(kafka_bootstrap, topics, tmp_path / "second.log", http=True, settings=eos)
        second.start().wait_ready()  # its producer took over the transactional id
        reqs = requests("zombie", 2000)
        send_requests(c, reqs)  # the first tries a transaction with its fenced producer
        wait_until(lambda: not first.alive(), 120, "the fenced instance stops")
        assert first.proc is not None and first.proc.returncode == 1
        assert "fenced" in first.tail().lower(), first.tail()
        answered(c, reqs, deadline_s=180)  # the second answers everything
    finally:
        for rune in (first, second):
            if rune is not None and rune.alive():
                rune.stop()


def test_a_deleted_topic_stops_the_service_with_its_cause(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = create_topics(kafka_bootstrap, partitions=2)
    seeded(kafka_bootstrap, topics)
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log").start()
    try:
        rune.wait_ready()
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.delete_topics([topics.requests])[topics.requests].result(30)
        wait_until(lambda: not rune.alive(), 120, "the service stops")
        assert rune.proc is not None and rune.proc.returncode == 1
        assert topics.requests in rune.tail(), rune.tail()
    finally:
        if rune.alive():
            rune.kill()
        delete_topics(kafka_bootstrap, topics)
