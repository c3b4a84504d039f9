"""``rune topics create`` / ``rune topics list`` against the real broker: the topics exist
afterwards with the configured partitions, facts/policies/changes compacted, the others not;
a second run changes nothing and succeeds; a topic that differs from the settings is named."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from click.testing import CliRunner, Result

from rune.cli import main
from rune.config import Topics

ROLES = tuple(Topics.model_fields)
COMPACTED = {"facts", "policies", "changes", "state"}
SINGLE_PARTITION = {"policies", "dlq", "state"}
UNKNOWN_TOPIC_OR_PARTITION = 3


async def invoke(*args: str) -> Result:
    """Run the CLI in a thread: the command runs its own event loop (asyncio.run)."""
    return await asyncio.to_thread(
        CliRunner().invoke,
        main,
        list(args),
        env={"RUNE_KAFKA__BOOTSTRAP": None, "RUNE_KAFKA__PARTITIONS": None},
    )


async def describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, tuple[int, str]]:
    """Topic -> (partition count, cleanup.policy) for the topics of ``names`` that exist."""
    existing = set(await admin.list_topics())
    present = [n for n in names if n in existing]
    if not present:
        return {}
    counts = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(present)}
    [response] = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None}) for n in present]
    )
    policies: dict[str, str] = {}
    for resource in response.to_object()["resources"]:
        assert resource["error_code"] == 0, resource
        [entry] = resource["config_entries"]
        policies[resource["resource_name"]] = entry["config_value"]
    return {n: (counts[n], policies[n]) for n in present}


@pytest.fixture
async def names(kafka_admin: AIOKafkaAdminClient) -> AsyncIterator[dict[str, str]]:
    """Unique topic names per role; whatever of them exists afterwards is deleted."""
    run = uuid.uuid4().hex[:12]
    topics = {role: f"rune-test.topics-cli.{run}.{role}" for role in ROLES}
    yield topics
    existing = set(await kafka_admin.list_topics())
    made = [n for n in topics.values() if n in existing]
    if made:
        response = await kafka_admin.delete_topics(made)
        errors = [
            e
            for e in response.to_object()["topic_error_codes"]
            if e["error_code"] not in (0, UNKNOWN_TOPIC_OR_PARTITION)
        ]
        assert not errors, errors


def write_config(
    path: Path, names: dict[str, str], partitions: int, bootstrap: str | None = None
) -> Path:
    lines = ["version = 2", "[kafka]", f"partitions = {partitions}"]
    if bootstrap is not None:
        lines.append(f'bootstrap = "{bootstrap}"')
    lines.append("[topics]")
    lines += [f'{role} = "{name}"' for role, name in names.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def test_create_makes_every_topic_with_partitions_and_compaction(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "rune.toml", names, partitions=2)
    assert await describe(kafka_admin, list(names.values())) == {}

    result = await invoke("topics", "create", "--kafka", kafka_bootstrap, "--config", str(config))
    assert result.exit_code == 0, result.output
    assert f"{len(ROLES)} topic(s) created, 0 existed" in result.stderr

    state = await describe(kafka_admin, list(names.values()))
    expected = {
        names[role]: (
            1 if role in SINGLE_PARTITION else 2,
            "compact" if role in COMPACTED else "delete",
        )
        for role in ROLES
    }
    assert state == expected
    for role in ROLES:
        [row] = [line for line in result.stdout.splitlines() if names[role] in line]
        assert row.split()[0] == role and row.endswith("created"), row


async def test_create_twice_is_fine_and_bootstrap_comes_from_the_config_file(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "rune.toml", names, partitions=3, bootstrap=kafka_bootstrap)
    first = await invoke("topics", "create", "--config", str(config))
    assert first.exit_code == 0, first.output
    after_first = await describe(kafka_admin, list(names.values()))
    assert len(after_first) == len(ROLES)

    second = await invoke("topics", "create", "--config", str(config))
    assert second.exit_code == 0, second.output
    assert f"0 topic(s) created, {len(ROLES)} existed" in second.stderr
    assert "warning" not in second.stderr
    assert await describe(kafka_admin, list(names.values())) == after_first
    rows = [line for line in second.stdout.splitlines() if "rune-test.topics-cli." in line]
    assert len(rows) == len(ROLES) and all(r.endswith("exists") for r in rows), rows

    listed = await invoke("topics", "list", "--config", str(config))
    assert listed.exit_code == 0, listed.output
    for role in ROLES:
        [row] = [line for line in listed.stdout.splitlines() if names[role] in line]
        partitions = "1" if role in SINGLE_PARTITION else "3"
        assert row.split()[:3] == [role, names[role], partitions], row
        assert row.endswith("exists"), row


async def test_existing_topics_that_differ_are_named_and_left_alone(
    kafka_bootstrap: str,
    kafka_admin: AIOKafkaAdminClient,
    names: dict[str, str],
    tmp_path: Path,
) -> None:
    small = write_config(tmp_path / "small.toml", names, partitions=1)
    made = await invoke("topics", "create", "--kafka", kafka_bootstrap, "--config", str(small))
    assert made.exit_code == 0, made.output

    big = write_config(tmp_path / "big.toml", names, partitions=4)
    listed = await invoke("topics", "list", "--kafka", kafka_bootstrap, "--config", str(big))
    assert listed.exit_code == 0, listed.output
    [facts_row] = [line for line in listed.stdout.splitlines() if names["facts"] in line]
    assert "differs: 1 partition(s), settings ask for 4" in facts_row

    again = await invoke("topics", "create", "--kafka", kafka_bootstrap, "--config", str(big))
    assert again.exit_code == 0, again.output
    assert f"topic {names['facts']} exists with 1 partition(s), settings ask for 4" in (
        again.stderr
    )
    assert f"topic {names['policies']} exists" not in again.stderr  # one partition either way
    state = await describe(kafka_admin, list(names.values()))
    assert state[names["facts"]] == (1, "compact")  # partitions are never added to a keyed topic


async def test_list_without_kafka_prints_the_planned_topics(
    names: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "rune.toml", names, partitions=5)
    result = await invoke("topics", "list", "--config", str(config))
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == set(ROLES)
    assert rows["facts"][1:4] == [names["facts"], "5", "cleanup.policy=compact"]
    assert rows["dlq"][1:4] == [names["dlq"], "1", "-"]


async def test_create_without_bootstrap_or_with_an_unreachable_broker_fails_clearly(
    names: dict[str, str], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "rune.toml", names, partitions=1)
    missing = await invoke("topics", "create", "--config", str(config))
    assert missing.exit_code == 1
    assert "no Kafka bootstrap" in missing.stderr

    unreachable = await invoke(
        "topics", "create", "--kafka", "127.0.0.1:1", "--config", str(config)
    )
    assert unreachable.exit_code == 1
    assert "cannot connect to Kafka at 127.0.0.1:1" in unreachable.stderr
