"""``rune produce`` / ``rune consume`` on the real broker: bad input produces nothing, dead
letters and decisions print readably, json and --max."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from rune.config import Topics
from tests.integration.processes import Client, create_topics, delete_topics

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    t = create_topics(kafka_bootstrap, partitions=2)
    yield t
    delete_topics(kafka_bootstrap, t)


def _rune(
    kafka: str, topics: Topics, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNE_")}
    env["PYTHONPATH"] = str(REPO)
    flags = [
        f"--topic={role}={name}" for role, name in topics.model_dump().items() if role != "state"
    ]
    command, *rest = args
    return subprocess.run(
        [sys.executable, "-m", "rune.cli", command, "--kafka", kafka, *flags, *rest],
        env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_bad_input_produces_nothing(kafka_bootstrap: str, topics: Topics, tmp_path: Path) -> None:
    good = '{"op": "assert", "fact": ["member", "a", "b"]}'
    done = _rune(kafka_bootstrap, topics, "produce", "facts", "-", stdin=f"{good}\n\n{{nope\n")
    assert done.returncode == 1 and "stdin:3: invalid JSON" in done.stderr
    done = _rune(
        kafka_bootstrap, topics, "produce", "facts", "-",
        stdin=f'{good}\n{{"op": "assert", "fact": ["Member", "a"]}}\n',
    )  # fmt: skip
    assert done.returncode == 1 and "stdin:2: invalid event" in done.stderr
    policies = tmp_path / "p"
    policies.mkdir()
    (policies / "a.dl").write_text("ok(X) :- member(X, Y).\nbad(X) :- member(Y, Z).\n")
    done = _rune(kafka_bootstrap, topics, "produce", "bundle", str(policies))
    assert done.returncode == 1 and f"{policies}/a.dl:2:1: unsafe rule" in done.stderr
    assert Client(kafka_bootstrap, topics).read(topics.facts) == []
    assert Client(kafka_bootstrap, topics).read(topics.policies) == []
    done = _rune(kafka_bootstrap, topics, "produce", "facts", "-", stdin=f"{good}\n")
    assert done.returncode == 0, done.stderr
    token = orjson.loads(done.stdout)
    [(partition, offset)] = token["at_least"][topics.facts].items()
    [record] = Client(kafka_bootstrap, topics).read(topics.facts)
    assert (str(record.partition), record.offset) == (partition, offset)
    assert record.key == b'f:["member","a","b"]'


def test_consume_dead_letters_and_decisions(kafka_bootstrap: str, topics: Topics) -> None:
    c = Client(kafka_bootstrap, topics)
    letter = {
        "topic": topics.facts, "partition": 1, "offset": 17, "stage": "ingest",
        "error": "invalid JSON: unexpected character", "key_b64": "Zjpb",
        "value_b64": "", "key_bytes": 3, "value_bytes": 0, "truncated": False,
    }  # fmt: skip
    c.send(topics.dlq, orjson.dumps(letter), f"{topics.facts}/1/17".encode())
    done = _rune(kafka_bootstrap, topics, "consume", "dlq", "--from-beginning", "--timeout", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"{topics.facts}/1/17  ingest: invalid JSON: unexpected character  key=f:[\n"
    )
    decision = {
        "id": "r-9", "decision": "deny", "reasons": [], "errors": [], "policy_version": 4,
        "watermark": {}, "latency_us": 3, "error": "stale view: rune.facts[0] at 3 < 9",
        "request": {"principal": {"type": "User", "id": "zoë"},
                    "action": {"type": "Action", "id": "read"},
                    "resource": {"type": "Doc", "id": "d"}},
    }  # fmt: skip
    for _ in range(2):  # redelivered: printed once
        c.send(topics.decisions, orjson.dumps(decision), b"r-9")
    c.send(topics.decisions, orjson.dumps({**decision, "id": "r-10"}), b"r-10")
    args = ("consume", "decisions", "--from-beginning", "--timeout", "1")
    done = _rune(kafka_bootstrap, topics, *args)
    lines = done.stdout.splitlines()
    assert (
        lines.count(
            'r-9  DENY  v4  User::"zoë" Action::"read" Doc::"d"  '
            "error: stale view: rune.facts[0] at 3 < 9"
        )
        == 1
    )
    assert len(lines) == 2
    done = _rune(kafka_bootstrap, topics, *args, "--format", "json", "--max", "1")
    [only] = done.stdout.splitlines()
    assert orjson.loads(only)["error"].startswith("stale view")
    assert "rune: 1 record(s) from decisions" in done.stderr
