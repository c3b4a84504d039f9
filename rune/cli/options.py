"""Options shared by ``rune run`` and ``rune serve``, and their translation into settings."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rune.config import ConfigError, Loaded, Settings, load

__all__ = ["TOPIC_OPTION", "load_from_flags", "service_options", "tune_process"]

F = TypeVar("F", bound=Callable[..., Any])


TOPIC_OPTION = click.option(
    "--topic",
    "topic_overrides",
    multiple=True,
    metavar="ROLE=NAME",
    help="Topic name, e.g. facts=my.facts "
    "(roles: facts policies requests decisions changes dlq state).",
)
"""``--topic ROLE=NAME`` (repeatable): every command that reads or writes RUNE's topics."""


def service_options(fn: F) -> F:
    """The options every service command takes (settings file, Kafka, topics, tokens)."""
    decorators = [
        click.option(
            "--kafka",
            metavar="HOST:PORT",
            default=None,
            help="Kafka bootstrap address (kafka.bootstrap, env RUNE_KAFKA__BOOTSTRAP). "
            "Without it: the embedded log.",
        ),
        click.option(
            "--config",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            envvar="RUNE_CONFIG",
            help="TOML settings file (env RUNE_CONFIG; docs/configuration.md lists the keys).",
        ),
        click.option("--group-id", default=None, help="Consumer group of the request topic."),
        TOPIC_OPTION,
        click.option(
            "--token-wait", type=float, default=None, help="Seconds a token may be waited for."
        ),
        click.option(
            "--changefeed",
            "changefeed_relations",
            multiple=True,
            metavar="RELATION",
            help="Publish changes of this derived relation to the changes topic (repeatable).",
        ),
    ]
    for decorate in reversed(decorators):
        fn = decorate(fn)
    return fn


def load_from_flags(
    config: Path | None,
    kafka: str | None = None,
    group_id: str | None = None,
    topic_overrides: tuple[str, ...] = (),
    token_wait: float | None = None,
    changefeed_relations: tuple[str, ...] = (),
    **more: dict[str, Any],
) -> Loaded:
    """Settings from the file, the environment and the flags (flags win); usage errors
    become :class:`click.BadParameter` / :class:`click.ClickException`."""
    topics: dict[str, str] = {}
    for item in topic_overrides:
        role, _, name = item.partition("=")
        if not name:
            raise click.BadParameter(f"expected ROLE=NAME, got {item!r}", param_hint="--topic")
        topics[role] = name
    overrides: dict[str, Any] = {
        "kafka": {"bootstrap": kafka, "group_id": group_id},
        "topics": topics,
        "stream": {
            "token_wait_s": token_wait,
            "changefeed_relations": changefeed_relations or None,
        },
    }
    for section, values in more.items():
        overrides.setdefault(section, {}).update(values)
    try:
        return load(config, overrides)
    except ConfigError as exc:
        raise click.ClickException(f"invalid settings: {exc}") from exc


def tune_process(settings: Settings) -> None:
    """Process-wide settings of ``rune run``/``rune serve`` (not of an embedding application):
    the interpreter's thread switch interval. The Kafka readers and the delivery-report thread
    need the interpreter for a moment per batch; with Python's default of 5 ms, each such hand
    over waits up to 5 ms while the event loop decides, and a request crosses two of them."""
    sys.setswitchinterval(settings.stream.switch_interval_ms / 1000)
