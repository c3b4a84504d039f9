"""Blocking helpers for tests that run RUNE as it is deployed (its own process) against a real
broker and talk to it through topics with a librdkafka client, as a service of its users
would: topics of their own per test, a producer that keys and places records the way Kafka's
default partitioner does, readers of whole topics, and a running ``rune run``/``rune serve``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from rune.config import Topics
from rune.streams import event_key

DEADLINE_S = 60.0
COMPACT = {"cleanup.policy": "compact"}
SINGLE = {"policies", "dlq", "state"}
COMPACTED = {"facts", "policies", "changes", "state"}
QUIET = {"log_level": 0, "error_cb": lambda err: None}


def create_topics(
    bootstrap: str,
    partitions: int = 2,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> Topics:
    """A fresh set of RUNE's topics (unique names); ``configs`` adds topic configs by role."""
    tag = uuid.uuid4().hex[:10]
    topics = Topics(**{role: f"rune-test.{tag}.{role}" for role in Topics.model_fields})
    new = []
    for role, name in topics.model_dump().items():
        config = {**(COMPACT if role in COMPACTED else {}), **(configs or {}).get(role, {})}
        new.append(NewTopic(name, 1 if role in SINGLE else partitions, 1, config=config))
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    for future in admin.create_topics(new).values():
        future.result(30)
    deadline = time.monotonic() + 30
    for t in new:  # every partition has a leader
        while True:
            meta = admin.list_topics(t.topic, timeout=10).topics.get(t.topic)
            if (
                meta is not None
                and meta.error is None
                and len(meta.partitions) == (t.num_partitions)
                and all(p.leader >= 0 for p in meta.partitions.values())
            ):
                break
            assert time.monotonic() < deadline, f"{t.topic} has no leaders"
            time.sleep(0.05)
    return topics


def delete_topics(bootstrap: str, topics: Topics) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **QUIET})
    for future in admin.delete_topics(list(topics.model_dump().values())).values():
        with contextlib.suppress(KafkaException):
            future.result(30)


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        return orjson.loads(self.value) if self.value is not None else None


class Client:
    """A producer and readers of one set of topics."""

    def __init__(self, bootstrap: str, topics: Topics, max_bytes: int = 1_000_000) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
             "partitioner": "murmur2_random", "message.max.bytes": max_bytes, **QUIET}
        )  # fmt: skip

    def send(
        self, topic: str, value: bytes | None, key: bytes | None = None, partition: int = -1
    ) -> tuple[int, int]:
        """Produce one record and wait for its acknowledgement; ``(partition, offset)``."""
        acked: list[Any] = []
        self.producer.produce(
            topic, value, key, partition=partition,
            on_delivery=lambda err, msg: acked.append((err, msg)),
        )  # fmt: skip
        self.producer.flush(30)
        [(err, msg)] = acked
        assert err is None, err
        return msg.partition(), msg.offset()

    def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> int:
        """Produce ``(key, value)`` records as fast as librdkafka takes them; wait for all."""
        n = 0
        for key, value in records:
            while True:
                try:
                    self.producer.produce(topic, value, key)
                    break
                except BufferError:
                    self.producer.poll(0.05)
            n += 1
        assert self.producer.flush(120) == 0
        return n

    def event(self, event: dict[str, Any], **kw: Any) -> dict[str, dict[str, int]]:
        """Produce a fact/entity event with its canonical key; returns its consistency token."""
        key = kw.pop("key", None) or event_key(event)
        p, off = self.send(self.topics.facts, orjson.dumps(event), key, **kw)
        return {self.topics.facts: {str(p): off}}

    def bundle(self, bundle: dict[str, Any] | bytes, name: bytes = b"default") -> int:
        value = bundle if isinstance(bundle, bytes) else orjson.dumps(bundle)
        return self.send(self.topics.policies, value, name)[1]

    def request(self, request: dict[str, Any] | bytes) -> None:
        value = request if isinstance(request, bytes) else orjson.dumps(request)
        self.producer.produce(self.topics.requests, value)
        self.producer.flush(30)

    def read(
        self,
        topic: str,
        done: Callable[[list[Rec]], bool] = lambda records: True,
        deadline_s: float = DEADLINE_S,
        *,
        committed_only: bool = False,
    ) -> list[Rec]:
        """Every record of ``topic`` from the beginning, read until ``done(records)`` holds
        and the end is reached (fails at the deadline)."""
        consumer = Consumer(
            {"bootstrap.servers": self.bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
             "enable.auto.commit": False, "enable.partition.eof": True,
             "isolation.level": "read_committed" if committed_only else "read_uncommitted",
             **QUIET}
        )  # fmt: skip
        try:
            parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
            records: list[Rec] = []
            at_end: set[int] = set()
            deadline = time.monotonic() + deadline_s
            while True:
                msg = consumer.poll(0.1)
                if msg is not None:
                    err = msg.error()
                    if err is None:
                        records.append(
                            Rec(topic, msg.partition(), msg.offset(), msg.key(), msg.value())
                        )
                        at_end.discard(msg.partition())
                    elif err.code() == err._PARTITION_EOF:
                        at_end.add(msg.partition())
                if len(at_end) == len(parts) and done(records):
                    return records
                assert time.monotonic() < deadline, (
                    f"{topic}: condition not met in {deadline_s}s, {len(records)} records"
                )
        finally:
            consumer.close()

    def decisions(
        self, ids: Iterable[str], deadline_s: float = DEADLINE_S, *, committed_only: bool = False
    ) -> dict[str, list[dict[str, Any]]]:
        """Every decision per request id, once all of ``ids`` have one."""
        want = set(ids)

        def done(records: list[Rec]) -> bool:
            return want <= {orjson.loads(r.value)["id"] for r in records if r.value}

        out: dict[str, list[dict[str, Any]]] = {}
        for r in self.read(self.topics.decisions, done, deadline_s, committed_only=committed_only):
            d = r.json()
            out.setdefault(d["id"], []).append(d)
        return out

    def dead_letters(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.read(self.topics.dlq)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rune:
    """``rune run --kafka`` (or ``rune serve --kafka`` with ``http=True``) in its own process,
    on ``topics``; ``settings`` become ``RUNE_<SECTION>__<KEY>`` variables."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        log: Path,
        *,
        http: bool = False,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.bootstrap, self.topics, self.log, self.http = bootstrap, topics, log, http
        self.port = free_port() if http else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNE_")}
        env["RUNE_KAFKA__GROUP_ID"] = f"rune-{topics.requests}"
        env["RUNE_LOGGING__DECISIONS"] = "none"
        for role, name in topics.model_dump().items():
            env[f"RUNE_TOPICS__{role.upper()}"] = name
        for section, values in (settings or {}).items():
            for key, value in values.items():
                text = value if isinstance(value, str) else json.dumps(value)
                env[f"RUNE_{section.upper()}__{key.upper()}"] = text
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rune:
        command = "serve" if self.http else "run"
        argv = [sys.executable, "-m", "rune.cli", command, "--kafka", self.bootstrap]
        if self.http:
            argv += ["--port", str(self.port)]
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                argv, env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=err,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> tuple[int, Any]:
        """An HTTP GET of ``rune serve``: ``(status, JSON body or text)``."""
        return self.call(urllib.request.Request(f"http://127.0.0.1:{self.port}{path}"))

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        """An HTTP POST of a JSON body to ``rune serve``: ``(status, JSON body or text)``."""
        url = f"http://127.0.0.1:{self.port}{path}"
        return self.call(urllib.request.Request(url, orjson.dumps(body), method="POST"))

    def call(self, req: urllib.request.Request) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        try:
            return status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return status, body.decode()

    def wait_ready(self, deadline_s: float = DEADLINE_S) -> None:
        """Until ``/health/ready`` says ready (``rune serve``) or, for ``rune run``, until a
        probe request is answered."""
        deadline = time.monotonic() + deadline_s
        if not self.http:
            c = Client(self.bootstrap, self.topics)
            probe = f"probe-{uuid.uuid4().hex[:8]}"
            c.request(request(probe, "probe", "probe", "probe"))
            c.decisions([probe], deadline_s)
            return
        while True:
            assert self.alive(), f"rune exited: {self.tail()}"
            try:
                status, _ = self.get("/health/ready")
                if status == 200:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not ready in {deadline_s}s: {self.tail()}"
            time.sleep(0.1)

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def request(rid: str, principal: str, action: str, resource: str, **more: Any) -> dict[str, Any]:
    return {
        "id": rid,
        "principal": {"type": "User", "id": principal},
        "action": {"type": "Action", "id": action},
        "resource": {"type": "Doc", "id": resource},
        "context": {},
        **more,
    }


def wait_until(
    predicate: Callable[[], bool], deadline_s: float = DEADLINE_S, what: str = ""
) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < deadline, f"not reached in {deadline_s}s: {what}"
        time.sleep(0.05)
