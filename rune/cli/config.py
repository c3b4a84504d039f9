"""``rune config check FILE`` and ``rune config migrate FILE``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import tomli_w

from rune.config import ConfigError, Settings, load, read_file

__all__ = ["config"]


@click.group()
def config() -> None:
    """Validate and migrate settings files (TOML)."""


@config.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Validate FILE together with the RUNE_* environment and print the effective settings.

    Secrets are masked. Exit 0 when valid, 1 with the file and key of every problem when not.
    Notes on a migrated (older) file go to stderr.

    Example: rune config check /etc/rune/rune.toml
    """
    try:
        loaded = load(file)
    except ConfigError as exc:
        click.echo(f"rune: invalid settings: {exc}", err=True)
        sys.exit(1)
    for note in loaded.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"# {file}: valid (version {loaded.settings.version})")
    click.echo(tomli_w.dumps(_plain(loaded.settings)), nl=False)


@config.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def migrate(file: Path) -> None:
    """Print FILE rewritten in the current version's layout (only the keys it sets).

    Example: rune config migrate old.toml > rune.toml
    """
    try:
        doc, notes = read_file(file)
        Settings.model_validate(doc)
    except ConfigError as exc:
        click.echo(f"rune: invalid settings: {exc}", err=True)
        sys.exit(1)
    except ValueError as exc:
        click.echo(f"rune: invalid settings: {file}: {exc}", err=True)
        sys.exit(1)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    body = {k: v for k, v in doc.items() if k != "version"}
    click.echo(tomli_w.dumps({"version": doc["version"], **body}), nl=False)


def _plain(settings: Settings) -> dict[str, Any]:
    """Settings as TOML-able data, secrets masked (set ones show as ``"**********"``)."""
    data = settings.model_dump(mode="json")
    return {k: v for k, v in data.items() if v is not None}
