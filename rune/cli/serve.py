"""``rune serve``: the stream service plus the HTTP API (docs/API.md, docs/OPERATIONS.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import click
import orjson

from rune.cli.bundle import bundle_bytes, bundle_option
from rune.cli.inputs import EXAMPLE
from rune.cli.options import load_from_flags, service_options, tune_process
from rune.config import Settings
from rune.connectors.base import Log, Outgoing
from rune.errors import RuneError
from rune.ops.logs import configure_logging

__all__ = ["serve"]

WORKER_ENV = "RUNE_WORKER_INDEX"


@click.command()
@service_options
@click.option("--host", default=None, help="Interface to listen on (server.host).")
@click.option("--port", type=int, default=None, help="HTTP port (server.port; 0: any free).")
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Processes, each a full replica sharing the port (server.workers; Kafka mode only).",
)
@bundle_option(
    "Embedded: policy bundle loaded at start, a JSON file or a directory of *.dl, *.cedar, "
    "*.cedarschema and bundle.toml files. Default: the bundled example."
)
@click.option(
    "--events",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Embedded: fact/entity events (JSONL) applied at start (repeatable; in order). "
    "Default: the example's events when --bundle is omitted, else none.",
)
@click.option(
    "--empty", is_flag=True, help="Embedded: start without the example (post a bundle first)."
)
def serve(
    kafka: str | None,
    config: Path | None,
    group_id: str | None,
    topic_overrides: tuple[str, ...],
    token_wait: float | None,
    changefeed_relations: tuple[str, ...],
    host: str | None,
    port: int | None,
    workers: int | None,
    bundle: Path | None,
    events: tuple[Path, ...],
    empty: bool,
) -> None:
    """Serve the HTTP API (authorize, events, bundles, lookups, health, metrics, admin)
    next to the stream service, on one event loop.

    Without --kafka it runs on the embedded log, preloaded with the bundled example, so
    `rune serve` works with nothing else installed:

    \b
        rune serve --port 8080
        curl -s localhost:8080/v1/authorize -d @request.json

    SIGHUP reloads the settings; SIGTERM drains (readiness fails, in-flight requests are
    answered) and exits 0.
    """
    flags: dict[str, Any] = {
        "server": {"host": host, "port": port, "workers": workers},
    }
    loaded = load_from_flags(
        config, kafka, group_id, topic_overrides, token_wait, changefeed_relations, **flags
    )
    settings = loaded.settings
    configure_logging(settings.logging)
    tune_process(settings)
    if settings.server.workers > 1 and WORKER_ENV not in os.environ:
        sys.exit(_supervise(settings.server.workers))
    overrides = {
        "kafka": {"bootstrap": kafka, "group_id": group_id},
        "stream": {"token_wait_s": token_wait},
        **flags,
    }
    log = _open_log(settings, None if empty else (bundle, events))
    try:
        asyncio.run(_serve(settings, log, config, overrides))
    except RuneError as exc:
        raise click.ClickException(str(exc)) from exc


async def _serve(
    settings: Settings, log: Log, config: Path | None, overrides: dict[str, Any]
) -> None:
    from rune.http.host import HttpHost

    host = HttpHost(
        settings,
        log,
        config_path=config,
        overrides=overrides,
        reuse_port=WORKER_ENV in os.environ,
    )
    host.install_signal_handlers()
    await host.run()


def _open_log(settings: Settings, preload: tuple[Path | None, tuple[Path, ...]] | None) -> Log:
    """Kafka, or the embedded log with its topics and the preloaded bundle and events."""
    if not settings.embedded:
        from rune.streams.app import kafka_log

        return kafka_log(settings, instance=os.environ.get(WORKER_ENV, ""))
    from rune.connectors.embedded import EmbeddedLog, Retention
    from rune.streams.app import topic_specs
    from rune.streams.keys import event_key

    log = EmbeddedLog(Retention(**settings.embedded_log.model_dump()))
    for spec in topic_specs(settings):
        log.create_topic(spec.name, spec.partitions, spec.configs)
    if preload is None:
        return log
    bundle, events = preload
    t = settings.topics
    raw = bundle_bytes(bundle) if bundle else (EXAMPLE / "bundle.json").read_bytes()
    log.append(Outgoing(t.policies, b"default", raw), str(bundle or "example bundle"))
    files: list[tuple[str, bytes]] = [(str(path), path.read_bytes()) for path in events]
    if not events and bundle is None:  # the example's bundle goes with its events
        files.append(("example events", (EXAMPLE / "events.jsonl").read_bytes()))
    for name, lines in files:
        for n, line in enumerate(lines.splitlines(), 1):
            if not line.strip():
                continue
            try:
                key = event_key(orjson.loads(line))
            except (orjson.JSONDecodeError, RuneError, TypeError, AttributeError):
                key = None  # ingest reports the bad line with its origin and dead-letters it
            log.append(Outgoing(t.facts, key, line), f"{name}:{n}")
    return log


def _supervise(workers: int) -> int:
    """Run ``workers`` copies of this command sharing the port (SO_REUSEPORT); forward
    SIGTERM/SIGINT/SIGHUP; return the worst exit code."""
    argv = [sys.executable, "-m", "rune.cli", *sys.argv[1:], "--workers", "1"]
    children = [
        subprocess.Popen(argv, env={**os.environ, WORKER_ENV: str(i)}) for i in range(workers)
    ]

    def forward(sig: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    codes = [child.wait() for child in children]
    return max(codes, key=abs)
