"""``rune produce facts|bundle|requests FILE|-``: write to RUNE's topics from the shell
(through :mod:`rune.client`).

JSONL events (keyed and placed as ingest requires; the whole input is checked before anything
is produced), a bundle (JSON file or source directory, validated first) or JSONL requests
(key = id; ``--wait`` prints their decisions).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson

from rune.cli.bundle import validated_source
from rune.cli.client_options import (
    client_options,
    client_settings,
    command_failure,
    kafka_options,
)
from rune.client import ClientError, FactProducer, Requests, Token
from rune.config import Settings
from rune.errors import RuneError
from rune.policies.errors import PolicyError
from rune.policies.uids import kind
from rune.streams.keys import event_key

__all__ = ["produce"]


def _lines(source: str) -> Iterator[tuple[str, int, bytes]]:
    """``(label, line number, line)`` of every non-blank line of FILE or stdin."""
    if source == "-":
        stream = click.get_binary_stream("stdin")
        label = "stdin"
    else:
        try:
            stream = Path(source).open("rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise click.ClickException(f"{source}: cannot read: {exc.strerror or exc}") from None
        label = source
    with stream:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield label, number, line


def _objects(source: str, what: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for label, number, line in _lines(source):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(f"{label}:{number}: invalid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise click.ClickException(
                f"{label}:{number}: {what} is a JSON object, got {kind(value)}"
            )
        out.append((f"{label}:{number}", value))
    return out


@click.command(
    short_help="Produce facts, a bundle or requests to RUNE's topics.",
    help="""Produce to RUNE's topics: KIND is facts, bundle or requests; SOURCE a file or - (stdin).

\b
facts     JSONL fact/entity events of contract v1. Each record is keyed ("f:"/"e:" +
          canonical JSON) and placed (murmur2) as ingest requires; retract/delete events
          become tombstones. Every line is checked first (FILE:LINE on error, nothing
          produced). Prints the consistency token covering the records (JSON, the
          "consistency" field of a request).
bundle    a bundle JSON file, a source directory (*.dl, *.cedar, bundle.toml) or - (JSON).
          Validated first (errors at FILE:LINE:COLUMN); key = its name. Prints its token.
requests  JSONL requests (an "id" is added when missing; key = id). Prints the ids, or with
          --wait the decisions (JSONL) once all have one.

\b
Examples:
  rune produce --kafka localhost:9092 bundle policies/
  TOKEN=$(rune produce --kafka localhost:9092 facts facts.jsonl)
  rune produce --kafka localhost:9092 requests requests.jsonl --token "$TOKEN" --wait
""",
)
@kafka_options
@click.argument("what", metavar="KIND", type=click.Choice(["facts", "bundle", "requests"]))
@click.argument("source", metavar="SOURCE")
@click.option("--name", default=None, help="bundle: the record key (default: the bundle's name).")
@click.option(
    "--version",
    "version",
    type=click.IntRange(0, 2**63 - 1),
    default=None,
    help="bundle: override the version.",
)
@click.option(
    "--token",
    "token_json",
    multiple=True,
    metavar="JSON",
    help="requests: attach this consistency token (what `produce facts` and `produce bundle` "
    "print; repeatable, merged) to requests that have none.",
)
@click.option("--wait", is_flag=True, help="requests: wait for the decisions and print them.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for acknowledgements (and decisions with --wait).",
)
def produce(
    kafka: str | None,
    config: Path | None,
    topic_overrides: tuple[str, ...],
    what: str,
    source: str,
    name: str | None,
    version: int | None,
    token_json: tuple[str, ...],
    wait: bool,
    timeout: float,
) -> None:
    settings = client_settings(config, kafka, topic_overrides)
    if what != "bundle" and (name is not None or version is not None):
        raise click.UsageError("--name and --version are for bundles")
    if what != "requests" and (token_json or wait):
        raise click.UsageError("--token and --wait are for requests")
    try:
        if what == "facts":
            _produce_facts(settings, source, timeout)
        elif what == "bundle":
            _produce_bundle(settings, source, name, version, timeout)
        else:
            _produce_requests(settings, source, token_json, wait, timeout)
    except RuneError as exc:
        raise command_failure(exc) from None


def _produce_facts(settings: Settings, source: str, timeout: float) -> None:
    events = _objects(source, "an event")
    from rune.authorizer import Authorizer

    checker = Authorizer(cache_entries=0)
    for where, event in events:  # all or nothing: check every line first
        try:
            checker.validate_events([event], prefix="")
            event_key(event)
        except RuneError as exc:
            raise click.ClickException(f"{where}: invalid event: {exc}") from None
    producer = FactProducer(client_options(settings, "producer"), settings.topics, validate=False)
    for _, event in events:
        producer.send_event(event)
    token = producer.flush(timeout)
    click.echo(orjson.dumps(token.consistency()).decode())
    parts = sum(len(p) for p in token.offsets.values())
    click.echo(
        f"rune: {len(events)} event(s) produced to {settings.topics.facts} ({parts} partition(s))",
        err=True,
    )


def _produce_bundle(
    settings: Settings, source: str, name: str | None, version: int | None, timeout: float
) -> None:
    if source == "-":
        try:
            raw = orjson.loads(click.get_binary_stream("stdin").read())
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(f"stdin: invalid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise click.ClickException(f"stdin: a bundle is a JSON object, got {kind(raw)}")
        if version is not None:
            raw["version"] = version
        from rune.authorizer import Authorizer

        try:
            Authorizer(cache_entries=0).validate_bundle(raw)
        except PolicyError as exc:
            raise click.ClickException(f"stdin: bundle rejected: {exc}") from None
        bundle: Any = raw
        label = "stdin"
    else:
        path = Path(source)
        if not path.exists():
            raise click.ClickException(f"{source}: no such file or directory")
        bundle = validated_source(path, version)
        label = source
    producer = FactProducer(client_options(settings, "producer"), settings.topics, validate=False)
    token = producer.publish_bundle(bundle, name, timeout)
    click.echo(orjson.dumps(token.consistency()).decode())
    body = bundle.bundle if not isinstance(bundle, dict) else bundle
    click.echo(
        f"rune: bundle version {body.get('version')} from {label} produced to "
        f"{settings.topics.policies}",
        err=True,
    )


def _produce_requests(
    settings: Settings, source: str, token_json: tuple[str, ...], wait: bool, timeout: float
) -> None:
    token = Token()
    for text in token_json:
        try:
            token = token.merge(Token.from_json(orjson.loads(text)))
        except (orjson.JSONDecodeError, ClientError) as exc:
            raise click.BadParameter(str(exc), param_hint="--token") from None
    requests = _objects(source, "a request")
    for where, request in requests:
        rid = request.get("id")
        if rid is not None and not isinstance(rid, str):
            raise click.ClickException(f"{where}: 'id' must be a string")
    client = Requests(client_options(settings, "requests"), settings.topics)
    try:
        ids = []
        for _, request in requests:
            if token and "consistency" not in request:
                request["consistency"] = token.consistency()
            ids.append(client.send(request))
        if not wait:
            client.close()
            for rid in ids:
                click.echo(rid)
        else:
            decisions = client.wait_all(ids, timeout)
            for rid in ids:
                click.echo(orjson.dumps(decisions[rid].to_json()).decode())
    finally:
        client.close()
    click.echo(f"rune: {len(ids)} request(s) produced to {settings.topics.requests}", err=True)
