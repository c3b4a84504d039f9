"""``rune bundle build``, and the ``--bundle`` loading every command shares.

``--bundle PATH`` takes a bundle JSON file or a directory of sources (``*.dl``, ``*.cedar``,
``*.cedarschema`` or ``schema.json``, ``bundle.toml``: :mod:`rune.policies.sources`). A
directory is assembled and validated at once, its errors reported at ``FILE:LINE:COLUMN``; a
JSON file is passed on as it is (the command validates it as before).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rune.authorizer import Authorizer
from rune.errors import RuneError
from rune.policies.errors import PolicyError
from rune.policies.sources import BundleSource, BundleSourceError, read_bundle

__all__ = ["bundle", "bundle_bytes", "bundle_option", "load_source", "validated_source"]

F = TypeVar("F", bound=Callable[..., Any])

BUNDLE_HELP = (
    "Policy bundle: a JSON file (version, datalog, cedar, schema) or a directory of *.dl, "
    "*.cedar, *.cedarschema / schema.json and bundle.toml files."
)


def bundle_option(help: str = BUNDLE_HELP) -> Callable[[F], F]:
    """``--bundle PATH``: a bundle JSON file or a directory of sources."""
    return click.option(
        "--bundle",
        type=click.Path(exists=True, file_okay=True, dir_okay=True, path_type=Path),
        help=help,
    )


def load_source(path: Path, version: int | None = None) -> BundleSource:
    """The bundle at ``path``, not validated; unreadable sources exit with their file."""
    try:
        return read_bundle(path, version)
    except BundleSourceError as exc:
        raise click.ClickException(str(exc)) from None


def validated_source(path: Path, version: int | None = None) -> BundleSource:
    """The bundle at ``path``, validated as ``load_bundle`` would (errors at FILE:LINE:COL)."""
    source = load_source(path, version)
    try:
        Authorizer().validate_bundle(source.bundle)
    except PolicyError as exc:
        raise click.ClickException(f"bundle rejected: {source.locate(exc)}") from None
    except RuneError as exc:  # pragma: no cover - validation raises PolicyErrors
        raise click.ClickException(f"{source.label}: bundle rejected: {exc}") from None
    return source


def bundle_bytes(path: Path) -> bytes:
    """What a command loads from ``--bundle``: a JSON file's bytes as they are, or a
    directory's bundle, validated (so that its errors name the source files)."""
    if not path.is_dir():
        try:
            return path.read_bytes()
        except OSError as exc:
            raise click.ClickException(f"{path}: cannot read: {exc.strerror or exc}") from None
    return validated_source(path).to_json()


@click.group()
def bundle() -> None:
    """Policy bundles from source files (.dl, .cedar, .cedarschema, bundle.toml)."""


@bundle.command("build")
@click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, dir_okay=True, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    default=None,
    help="Where the bundle JSON goes (default: stdout).",
)
@click.option(
    "--version",
    "version",
    type=click.IntRange(0, 2**63 - 1),
    default=None,
    help="Bundle version (overrides bundle.toml; default 1 when neither gives one).",
)
def build(directory: Path, output: Path | None, version: int | None) -> None:
    """Assemble DIRECTORY into a bundle JSON, validated.

    \b
    DIRECTORY holds (recursively, hidden entries skipped, in path order):
      *.dl            Datalog rules, concatenated
      *.cedar         Cedar policies, concatenated (ids policy0, policy1... in that order)
      *.cedarschema   Cedar schema (or one schema.json in Cedar's JSON schema format)
      bundle.toml     version = N, name = "...", description = "..." (all optional)

    Errors name the source file, line and column (exit 1).

    \b
    Examples:
      rune bundle build policies/ -o bundle.json
      rune bundle build policies/ --version 7 | rune produce --kafka localhost:9092 bundle -
    """
    source = validated_source(directory, version)
    data = source.to_json()
    if output is None or str(output) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            output.write_bytes(data)
        except OSError as exc:
            raise click.ClickException(f"{output}: cannot write: {exc.strerror or exc}") from None
    parts = ", ".join(f"{len(source.files(p))} {p} file(s)" for p in ("datalog", "cedar", "schema"))
    click.echo(
        f"rune: bundle {source.name!r} version {source.bundle['version']} from {parts}", err=True
    )
