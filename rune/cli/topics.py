"""``rune topics``: create and list the Kafka topics the service uses.

``rune topics create`` creates the missing topics with the partition counts and configs the
service expects (``rune.streams.app.topic_specs``: facts, policies and changes compacted,
policies and dead letters on one partition) through the same ``KafkaLog.ensure_topics`` the
service runs at start. Existing topics are left as they are; when one differs from what the
settings ask for (fewer partitions, another ``cleanup.policy``) a warning names it. Running it
again is harmless. ``rune topics list`` prints the topics of the settings and, with a Kafka
bootstrap, what the broker holds for each.

Topics get ``kafka.replication_factor`` replicas (default 1, a single broker; set 3 on a
production cluster, which also sets ``min.insync.replicas`` = 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rune.config import ConfigError, Settings, load_settings
from rune.connectors.base import ConnectorError, TopicSpec
from rune.streams.app import topic_specs

if TYPE_CHECKING:
    from rune.connectors.kafka import KafkaOptions

__all__ = ["topics"]

REQUEST_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Present:
    """What the broker holds for one topic (``None``: the topic does not exist)."""

    partitions: int
    configs: dict[str, str]


def _load(config: Path | None, kafka: str | None) -> Settings:
    try:
        return load_settings(config, {"kafka": {"bootstrap": kafka}})
    except ConfigError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc


def _bootstrap(settings: Settings) -> str:
    return settings.kafka.bootstrap


def _roles(settings: Settings) -> dict[str, str]:
    """Topic name -> role (facts, policies, ...)."""
    return {name: role for role, name in settings.topics.model_dump().items()}


async def _describe(settings: Settings, specs: Sequence[TopicSpec]) -> dict[str, Present | None]:
    """Partitions and configs per topic, as the broker has them."""
    from rune.connectors.kafka.admin import Admin

    admin = Admin(_options(settings).admin(), REQUEST_TIMEOUT_S)
    state = await admin.topic_state([s.name for s in specs])
    return {
        name: None if found is None else Present(found[0], found[1])
        for name, found in state.items()
    }


def _options(settings: Settings) -> KafkaOptions:
    from rune.connectors.kafka import KafkaOptions

    k = settings.kafka
    return KafkaOptions(
        bootstrap=k.bootstrap,
        client_id=k.client_id,
        request_timeout_ms=int(REQUEST_TIMEOUT_S * 1000),
        librdkafka={name: v.get_secret_value() for name, v in k.librdkafka.items()},
    )


async def _create(settings: Settings, specs: Sequence[TopicSpec]) -> dict[str, Present | None]:
    """Create the missing topics; returns what the broker held before."""
    from rune.connectors.kafka.admin import Admin

    before = await _describe(settings, specs)
    await Admin(_options(settings).admin(), REQUEST_TIMEOUT_S).ensure_topics(specs)
    return before


def _mismatches(spec: TopicSpec, present: Present) -> list[str]:
    out = []
    if present.partitions < spec.partitions:
        out.append(f"{present.partitions} partition(s), settings ask for {spec.partitions}")
    for key, want in spec.configs.items():
        have = present.configs.get(key)
        if have != want:
            out.append(f"{key}={have}, settings ask for {want}")
    return out


def _configs(spec: TopicSpec) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(spec.configs.items())) or "-"


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    header = ("ROLE", "TOPIC", "PARTITIONS", "CONFIGS", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _state(spec: TopicSpec, present: Present | None, absent: str) -> str:
    if present is None:
        return absent
    problems = _mismatches(spec, present)
    return "exists" if not problems else "differs: " + "; ".join(problems)


def _need_bootstrap(settings: Settings) -> str:
    bootstrap = _bootstrap(settings)
    if not bootstrap:
        raise click.ClickException(
            "no Kafka bootstrap: pass --kafka HOST:PORT or set it in the config file "
            "(RUNE_KAFKA__BOOTSTRAP); the embedded log has no topics to create"
        )
    return bootstrap


_KAFKA = click.option(
    "--kafka",
    metavar="HOST:PORT",
    default=None,
    help="Kafka bootstrap address (overrides the config file and the environment).",
)
_CONFIG = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML settings file: topic names, partitions, client id.",
)


@click.group()
def topics() -> None:
    """Create and list the Kafka topics RUNE uses."""


@topics.command("create")
@_KAFKA
@_CONFIG
def create(kafka: str | None, config: Path | None) -> None:
    """Create the missing topics with the configured partitions and configs (idempotent)."""
    settings = _load(config, kafka)
    bootstrap = _need_bootstrap(settings)
    specs = topic_specs(settings)
    try:
        before = asyncio.run(_create(settings, specs))
    except ConnectorError as exc:
        raise click.ClickException(str(exc)) from exc
    roles = _roles(settings)
    rows = []
    for spec in specs:
        present = before[spec.name]
        rows.append(
            (
                roles.get(spec.name, "?"),
                spec.name,
                str(spec.partitions if present is None else present.partitions),
                _configs(spec),
                _state(spec, present, "created"),
            )
        )
        if present is not None and (problems := _mismatches(spec, present)):
            click.echo(
                f"rune: warning: topic {spec.name} exists with {'; '.join(problems)}; left as is",
                err=True,
            )
    click.echo(_table(rows))
    created = sum(before[s.name] is None for s in specs)
    click.echo(
        f"rune: {created} topic(s) created, {len(specs) - created} existed on {bootstrap}", err=True
    )


@topics.command("list")
@_KAFKA
@_CONFIG
def list_(kafka: str | None, config: Path | None) -> None:
    """Print the topics of the settings; with a Kafka bootstrap, also their state there."""
    settings = _load(config, kafka)
    specs = topic_specs(settings)
    bootstrap = _bootstrap(settings)
    before: dict[str, Present | None] = {}
    if bootstrap:
        try:
            before = asyncio.run(_describe(settings, specs))
        except ConnectorError as exc:
            raise click.ClickException(str(exc)) from exc
    roles = _roles(settings)
    rows = []
    for spec in specs:
        present = before.get(spec.name)
        rows.append(
            (
                roles.get(spec.name, "?"),
                spec.name,
                str(spec.partitions if present is None else present.partitions),
                _configs(spec),
                _state(spec, present, "missing") if bootstrap else "(no kafka)",
            )
        )
    click.echo(_table(rows))
