"""``rune validate FILE...``: SpiceDB validation files and OpenFGA test files.

Exit codes: 0 every assertion holds, 1 an assertion fails (each failure is printed with the
path RUNE found or the step that is missing), 2 an invalid file (or a usage error).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click
import orjson

from rune.models.validation import Report, ValidationFileError, run_file

__all__ = ["validate"]


def _text(report: Report, verbose: bool) -> None:
    status = "ok" if report.ok else "FAILED"
    click.echo(
        f"{report.path}: {status}: {report.passed} passed, {len(report.failures)} failed"
        + (f", {len(report.skipped)} skipped" if report.skipped else "")
    )
    for f in report.failures:
        click.echo(f"  FAIL {f.where}")
        for line in f.detail.splitlines():
            click.echo(f"    {line}")
    if verbose:
        for s in report.skipped:
            click.echo(f"  SKIP {s}")


@click.command(epilog="Exit codes: 0 all assertions hold, 1 an assertion fails, 2 an invalid file.")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-v", "--verbose", is_flag=True, help="Also list what was skipped.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
def validate(files: Sequence[Path], verbose: bool, as_json: bool) -> None:
    """Run SpiceDB validation files (schema, relationships, assertions, validation) and
    OpenFGA store test files (.fga.yaml: model, tuples, tests) against RUNE's compiled model."""
    code = 0
    for path in files:
        try:
            report = run_file(path)
        except ValidationFileError as exc:
            if as_json:
                click.echo(orjson.dumps({"file": str(path), "error": str(exc)}))
            else:
                click.echo(f"{path}: invalid: {exc}", err=True)
            code = 2
            continue
        if as_json:
            click.echo(
                orjson.dumps(
                    {
                        "file": str(path),
                        "passed": report.passed,
                        "failures": [
                            {"where": f.where, "detail": f.detail} for f in report.failures
                        ],
                        "skipped": report.skipped,
                    }
                )
            )
        else:
            _text(report, verbose)
        if not report.ok and code == 0:
            code = 1
    sys.exit(code)
