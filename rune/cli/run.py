"""``rune run``: the streaming service.

``rune run --kafka HOST:PORT`` runs the streaming service on Kafka. Without ``--kafka`` the
same service runs on its embedded default: an in-process log fed from files (a policy bundle,
fact/entity events as JSONL, requests as JSONL) writing one decision per request as JSONL, and
exits once every request is answered. Without arguments it runs the bundled example in
``rune/examples/drive``.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import IO

import click
import orjson

from rune.cli.bundle import bundle_bytes, bundle_option
from rune.cli.inputs import EXAMPLE
from rune.cli.options import load_from_flags, service_options, tune_process
from rune.config import Settings
from rune.connectors.base import Outgoing
from rune.connectors.embedded import Retention
from rune.connectors.files import FileLog
from rune.errors import RuneError
from rune.ops.logs import configure_logging
from rune.streams.app import Service, kafka_log
from rune.streams.keys import event_key


@click.command()
@service_options
@bundle_option(
    "Embedded: policy bundle, a JSON file (version, datalog, cedar, schema) or a directory of "
    "*.dl, *.cedar, *.cedarschema and bundle.toml files. Default: the example."
)
@click.option(
    "--events",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Embedded: fact and entity events, one JSON object per line (repeatable; applied in "
    "order). Default: the example's events when --bundle is omitted, else none.",
)
@click.option(
    "--requests",
    "requests_path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Embedded: authorization requests as JSONL ('-' for stdin). Default: the example.",
)
@click.option(
    "--decisions",
    type=click.File("wb"),
    default="-",
    show_default=True,
    help="Embedded: where decisions go, as JSONL.",
)
@click.option("--batch-size", type=int, default=None, help="Events applied per batch.")
def run(
    kafka: str | None,
    config: Path | None,
    group_id: str | None,
    topic_overrides: tuple[str, ...],
    token_wait: float | None,
    changefeed_relations: tuple[str, ...],
    bundle: Path | None,
    events: tuple[Path, ...],
    requests_path: Path | None,
    decisions: IO[bytes],
    batch_size: int | None,
) -> None:
    """Run the stream service: on Kafka with --kafka, else on the embedded log over files.

    Embedded, it reads a bundle, fact/entity events and requests from files (the bundled
    example by default), writes one decision per request and exits once all are answered.
    On Kafka it runs until SIGTERM/SIGINT.
    """
    settings = load_from_flags(
        config,
        kafka,
        group_id,
        topic_overrides,
        token_wait,
        changefeed_relations,
        stream={"ingest_batch": batch_size},
    ).settings
    configure_logging(settings.logging)
    tune_process(settings)
    if settings.embedded:
        _run_embedded(settings, bundle, events, requests_path, decisions)
    else:
        _run_kafka(settings)


def _notice(message: str) -> None:
    click.echo(message, err=True)


def _run_kafka(settings: Settings) -> None:
    log = kafka_log(settings, notice=_notice)
    service = Service(settings, log, notice=_notice)

    async def main_() -> None:
        service.install_signal_handlers()
        await service.run()

    try:
        asyncio.run(main_())
    except RuneError as exc:
        raise click.ClickException(str(exc)) from exc
    s = service.ctx.stats
    click.echo(
        f"rune: stopped; {s.events_applied} events applied, {s.decisions} decisions written",
        err=True,
    )


def _event_key(line: bytes) -> bytes | None:
    try:
        event = orjson.loads(line)
        return event_key(event) if isinstance(event, dict) else None
    except (orjson.JSONDecodeError, RuneError):
        return None


def _run_embedded(
    settings: Settings,
    bundle: Path | None,
    events: tuple[Path, ...],
    requests_path: Path | None,
    decisions: IO[bytes],
) -> None:
    log = FileLog(Retention(**settings.embedded_log.model_dump()))
    t = settings.topics
    for name in t.model_dump().values():
        log.create_topic(name, 1)  # one partition each: decisions in request order
    raw = bundle_bytes(bundle) if bundle else (EXAMPLE / "bundle.json").read_bytes()
    log.append(Outgoing(t.policies, b"default", raw), bundle.name if bundle else None)
    for path in events:
        log.load_file(t.facts, path, _event_key)
    if not events and bundle is None:  # the example's bundle goes with its events
        with (EXAMPLE / "events.jsonl").open("rb") as stream:
            log.load_jsonl(t.facts, stream, "events.jsonl", _event_key)
    if requests_path is not None and str(requests_path) == "-":
        source: IO[bytes] = sys.stdin.buffer
    else:
        source = (
            requests_path.open("rb") if requests_path else (EXAMPLE / "requests.jsonl").open("rb")
        )
    with source:
        name = requests_path.name if requests_path else "requests.jsonl"
        log.load_jsonl(t.requests, source, name)
    log.sink(t.decisions, decisions)
    service = Service(settings, log, notice=_notice)
    try:
        asyncio.run(service.run(until_idle=True, require_bundle=True))
    except RuneError as exc:
        raise click.ClickException(str(exc)) from exc
    s = service.ctx.stats
    click.echo(
        f"rune: bundle v{service.ctx.authorizer.policy_version}, {s.events_applied} events "
        f"applied, {s.events_rejected} rejected, {s.records_undecodable} undecodable",
        err=True,
    )
    click.echo(f"rune: {s.decisions} decisions written", err=True)
