"""What ``rune produce`` and ``rune consume`` share: the ``--kafka``, ``--config`` and
``--topic`` options, the settings they give (a Kafka bootstrap is required) and the options
of the clients (:mod:`rune.client`) built from them.

Topic names and client settings come from the usual settings: ``--config``, ``RUNE_*``
variables, ``--topic ROLE=NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rune.cli.options import TOPIC_OPTION, load_from_flags
from rune.client._kafka import CLIENT_DELIVERY_TIMEOUT_MS
from rune.config import Settings
from rune.connectors.kafka.options import KafkaOptions
from rune.errors import RuneError

__all__ = ["client_options", "client_settings", "command_failure", "kafka_options"]

F = TypeVar("F", bound=Callable[..., Any])


def kafka_options(f: F) -> F:
    """The options every topic client command takes (bootstrap, settings file, topics)."""
    for decorate in reversed(
        [
            click.option(
                "--kafka",
                metavar="HOST:PORT",
                default=None,
                help="Kafka bootstrap address (kafka.bootstrap, env RUNE_KAFKA__BOOTSTRAP).",
            ),
            click.option(
                "--config",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                envvar="RUNE_CONFIG",
                help="TOML settings file: topic names, client id, librdkafka properties.",
            ),
            TOPIC_OPTION,
        ]
    ):
        f = decorate(f)
    return f


def client_settings(config: Path | None, kafka: str | None, topics: tuple[str, ...]) -> Settings:
    """The settings of those options (a usage error without a Kafka bootstrap)."""
    settings = load_from_flags(config, kafka, None, topics).settings
    if not settings.kafka.bootstrap:
        raise click.UsageError(
            "no Kafka bootstrap: pass --kafka HOST:PORT (or set kafka.bootstrap / "
            "RUNE_KAFKA__BOOTSTRAP)"
        )
    return settings


def client_options(settings: Settings, client: str) -> KafkaOptions:
    """Options of one client (``client`` suffixes the client id) from ``settings``."""
    k = settings.kafka
    return KafkaOptions(
        bootstrap=k.bootstrap,
        client_id=f"{k.client_id}-{client}",
        request_timeout_ms=k.request_timeout_ms,
        delivery_timeout_ms=CLIENT_DELIVERY_TIMEOUT_MS,
        librdkafka={name: v.get_secret_value() for name, v in k.librdkafka.items()},
    )


def command_failure(exc: RuneError) -> click.ClickException:
    """A RUNE error as the command's failure (its message, exit status 1)."""
    return click.ClickException(str(exc))
