"""Fixtures for tests against a real Kafka broker (deploy/kafka/broker).

- ``kafka_bootstrap`` (session): the bootstrap address. Taken from ``RUNE_KAFKA_BOOTSTRAP``
  (scripts/test sets it); when unset, the broker is started with ``deploy/kafka/broker start``
  and stopped at the end of the session, but only if this fixture started it.
- ``kafka_admin`` (function): a started ``AIOKafkaAdminClient``.
- ``kafka_topics`` (function): ``await kafka_topics(partitions=1, configs={...})`` creates a
  uniquely named topic, waits until it has a leader and returns its name; every topic it made
  is deleted after the test.

Every test under tests/integration/ is marked ``integration``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parents[2]
BROKER_SCRIPT = REPO_ROOT / "deploy" / "kafka" / "broker"
INTEGRATION_DIR = Path(__file__).resolve().parent

TOPIC_READY_TIMEOUT_S = 30.0
BROKER_START_TIMEOUT_S = 600  # the first start may download the Kafka jars

# Kafka error codes the fixtures handle by name.
TOPIC_ALREADY_EXISTS = 36
UNKNOWN_TOPIC_OR_PARTITION = 3


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(INTEGRATION_DIR):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    address = os.environ.get("RUNE_KAFKA_BOOTSTRAP", "").strip()
    if address:
        yield address
        return

    status = subprocess.run(
        [str(BROKER_SCRIPT), "status"], capture_output=True, text=True, check=False
    )
    already_running = status.returncode == 0
    start = subprocess.run(
        [str(BROKER_SCRIPT), "start"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=BROKER_START_TIMEOUT_S,
        check=False,
    )
    if start.returncode != 0:
        pytest.fail(
            f"{BROKER_SCRIPT} start failed (exit {start.returncode}):\n{start.stderr}",
            pytrace=False,
        )
    address = start.stdout.strip().splitlines()[-1]
    try:
        yield address
    finally:
        if not already_running:
            subprocess.run(
                [str(BROKER_SCRIPT), "stop"],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=120,
                check=False,
            )


@pytest.fixture
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


# The kafka_topics fixture: await kafka_topics(partitions=1, configs=None, prefix=None) -> name
TopicFactory = Callable[..., Awaitable[str]]


def _topic_name(request: pytest.FixtureRequest, prefix: str | None) -> str:
    base = prefix or request.node.name
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[:100] or "topic"
    return f"rune-test.{base}.{uuid.uuid4().hex[:12]}"


async def _wait_for_leaders(
    admin: AIOKafkaAdminClient, topic: str, partitions: int, deadline: float
) -> None:
    """Poll the metadata until every partition of ``topic`` has a leader."""
    while True:
        described = await admin.describe_topics([topic])
        info = next((t for t in described if t["topic"] == topic), None)
        if (
            info is not None
            and info["error_code"] == 0
            and len(info["partitions"]) == partitions
            and all(p["leader"] >= 0 for p in info["partitions"])
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for all partitions: {info}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def kafka_topics(
    kafka_admin: AIOKafkaAdminClient, request: pytest.FixtureRequest
) -> AsyncIterator[TopicFactory]:
    created: list[str] = []

    async def create(
        *,
        partitions: int = 1,
        configs: dict[str, str] | None = None,
        prefix: str | None = None,
    ) -> str:
        name = _topic_name(request, prefix)
        response = await kafka_admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))]
        )
        errors = [e for e in response.to_object()["topic_errors"] if e["error_code"] != 0]
        if errors:
            raise RuntimeError(f"creating topic {name} failed: {errors}")
        created.append(name)
        await _wait_for_leaders(
            kafka_admin, name, partitions, time.monotonic() + TOPIC_READY_TIMEOUT_S
        )
        return name

    yield create

    if created:
        response = await kafka_admin.delete_topics(created)
        errors = [
            e
            for e in response.to_object()["topic_error_codes"]
            if e["error_code"] not in (0, UNKNOWN_TOPIC_OR_PARTITION)
        ]
        if errors:
            raise RuntimeError(f"deleting topics {created} failed: {errors}")
