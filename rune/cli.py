"""The ``rune`` command line.

``rune run`` runs the main job on its embedded default: no Kafka, an in-process pipeline fed
from files (a policy bundle, fact/entity events as JSONL, requests as JSONL) writing one
decision per request as JSONL. Without arguments it runs the bundled example in
``rune/examples/drive``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from importlib import metadata, resources
from pathlib import Path
from typing import IO, Any

import click
import orjson

from rune.authorizer import Authorizer
from rune.errors import RuneError

EXAMPLE = resources.files("rune") / "examples" / "drive"


def _read_jsonl(stream: IO[bytes], name: str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)``; a line that is not JSON is reported, not fatal."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield number, orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            click.echo(f"{name}:{number}: invalid JSON: {exc}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """RUNE: a Kafka-native streaming authorization engine (incremental Datalog + Cedar)."""


@main.command()
@click.option(
    "--bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy bundle JSON (version, datalog, cedar, schema). Default: the example.",
)
@click.option(
    "--events",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Fact and entity events, one JSON object per line. Default: the example.",
)
@click.option(
    "--requests",
    "requests_path",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Authorization requests as JSONL ('-' for stdin). Default: the example.",
)
@click.option(
    "--decisions",
    type=click.File("wb"),
    default="-",
    show_default=True,
    help="Where decisions go, as JSONL.",
)
@click.option("--batch-size", default=500, show_default=True, help="Events applied per batch.")
def run(
    bundle: Path | None,
    events: Path | None,
    requests_path: Path | None,
    decisions: IO[bytes],
    batch_size: int,
) -> None:
    """Run the authorizer on its embedded default (no Kafka): bundle + events -> decisions."""
    az = Authorizer()
    bundle_text = bundle.read_bytes() if bundle else (EXAMPLE / "bundle.json").read_bytes()
    try:
        az.load_bundle(orjson.loads(bundle_text))
    except (orjson.JSONDecodeError, RuneError) as exc:
        raise click.ClickException(f"bundle rejected: {exc}") from exc

    applied = rejected = 0
    with events.open("rb") if events else (EXAMPLE / "events.jsonl").open("rb") as stream:
        batch: list[tuple[int, Any]] = []
        for item in _read_jsonl(stream, str(events or "events.jsonl")):
            batch.append(item)
            if len(batch) >= batch_size:
                a, r = _apply(az, batch, str(events or "events.jsonl"))
                applied, rejected, batch = applied + a, rejected + r, []
        a, r = _apply(az, batch, str(events or "events.jsonl"))
        applied, rejected = applied + a, rejected + r
    click.echo(
        f"rune: bundle v{az.policy_version}, {applied} events applied, {rejected} rejected",
        err=True,
    )

    if requests_path is not None and str(requests_path) == "-":
        source: IO[bytes] = sys.stdin.buffer
    else:
        source = (
            requests_path.open("rb") if requests_path else (EXAMPLE / "requests.jsonl").open("rb")
        )
    answered = 0
    with source:
        for _number, request in _read_jsonl(source, str(requests_path or "requests.jsonl")):
            decision = az.check(request if isinstance(request, dict) else {"request": request})
            decisions.write(orjson.dumps(decision) + b"\n")
            answered += 1
    decisions.flush()
    click.echo(f"rune: {answered} decisions written", err=True)


def _apply(az: Authorizer, batch: list[tuple[int, Any]], name: str) -> tuple[int, int]:
    """Apply a batch at once; if it is rejected, apply event by event to isolate the bad ones."""
    if not batch:
        return 0, 0
    try:
        az.apply_batch([event for _, event in batch])
        return len(batch), 0
    except RuneError:
        pass
    applied = rejected = 0
    for number, event in batch:
        try:
            az.apply(event)
            applied += 1
        except RuneError as exc:
            click.echo(f"{name}:{number}: event rejected: {exc}", err=True)
            rejected += 1
    return applied, rejected


@main.command()
def version() -> None:
    """Print the installed version of RUNE."""
    click.echo(metadata.version("rune"))


if __name__ == "__main__":
    main()
