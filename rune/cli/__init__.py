"""The ``rune`` command line: one module per command family.

- ``rune run``: the stream service (Kafka, or the embedded log over files), ``run.py``
- ``rune serve``: the stream service plus the HTTP API, ``serve.py``
- ``rune check`` / ``rune explain``: offline decisions, ``check.py`` (inputs in
  ``inputs.py``, explanations rendered by ``render.py``)
- ``rune benchmark``: in-process latency and throughput, ``bench.py``
- ``rune config check|migrate``: settings files, ``config.py``
- ``rune topics create|list``: the Kafka topics, ``topics.py``
- ``rune bundle build``: bundles from source files, ``bundle.py``
- ``rune test``: policy test files, ``policytest.py``
- ``rune produce`` / ``rune consume``: RUNE's topics from the shell, ``produce.py`` and
  ``consume.py`` (their shared options in ``client_options.py``)
- ``rune validate``: SpiceDB validation files and OpenFGA test files, ``validate.py``
- ``rune version``
"""

from __future__ import annotations

from importlib import metadata

import click

from rune.cli.bench import benchmark
from rune.cli.bundle import bundle
from rune.cli.check import check, explain
from rune.cli.config import config
from rune.cli.consume import consume
from rune.cli.policytest import test
from rune.cli.produce import produce
from rune.cli.run import run
from rune.cli.serve import serve
from rune.cli.topics import topics
from rune.cli.validate import validate

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """RUNE: a Kafka-native streaming authorization engine (incremental Datalog + Cedar).

    Start with `rune run` (the bundled example, no Kafka needed) or `rune serve` (the HTTP
    API on the same example). Settings: `--config FILE`, RUNE_* variables
    (docs/OPERATIONS.md).
    """


@main.command()
def version() -> None:
    """Print the installed version of RUNE."""
    click.echo(metadata.version("rune"))


for command in (
    run,
    serve,
    check,
    explain,
    benchmark,
    config,
    topics,
    bundle,
    test,
    produce,
    consume,
    validate,
):
    main.add_command(command)
