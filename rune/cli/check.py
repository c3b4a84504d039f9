"""``rune check`` and ``rune explain``: one request decided (or explained) offline.

Exit codes follow the Cedar CLI: 0 allow, 2 deny, 1 for any error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from rune.cli.inputs import (
    EXIT_DENY,
    EXIT_ERROR,
    CedarExitCommand,
    Loader,
    input_options,
    read_request,
)
from rune.cli.render import render_explanation

__all__ = ["check", "explain"]


def _dumps(value: object, pretty: bool) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0).decode()


def _finish(decision: dict[str, Any], report: bool = True) -> None:
    """Exit 0 on allow, 2 on deny, 1 when the request could not be evaluated."""
    if "error" in decision:
        if report:
            click.echo(f"rune: the request could not be evaluated: {decision['error']}", err=True)
        raise click.exceptions.Exit(EXIT_ERROR)
    if decision["decision"] != "allow":
        raise click.exceptions.Exit(EXIT_DENY)


_EXIT_CODES = """\b
Exit codes:
  0  allow
  2  deny (as in the Cedar CLI)
  1  error: a bad option or file, a bad bundle, a bad event line (named FILE:LINE), a
     request that is not valid JSON, or a request that could not be evaluated (its deny
     decision, with an "error" field naming the bad field, is still printed)"""

_INPUTS = """Builds an in-process Authorizer from a policy bundle and fact/entity event files
(JSONL, contract v1), then decides REQUEST: inline JSON, @FILE (a file holding the JSON) or -
(stdin). The request's "id" may be left out ("check" is used). Without --bundle the bundled
example (rune/examples/drive) is used, with its events unless --events is given."""


# -- rune check -----------------------------------------------------------------------------


@click.command(
    cls=CedarExitCommand,
    short_help="Decide one request offline (exit 0 allow, 2 deny, 1 error).",
    help=f"""Decide one request offline and print the decision (contract v1 JSON).

{_INPUTS}

\b
Examples:
  rune check '{{"principal": {{"type": "User", "id": "alice"}},
              "action": {{"type": "Action", "id": "write"}},
              "resource": {{"type": "Doc", "id": "design"}}}}'
  rune check --bundle bundle.json --events facts.jsonl --events entities.jsonl @request.json
  rune check --bundle bundle.json --events facts.jsonl - < request.json

{_EXIT_CODES}
""",
)
@input_options
@click.option("--pretty", is_flag=True, help="Indent the decision JSON.")
@click.argument("request", metavar="REQUEST")
def check(
    bundle: Path | None, events: tuple[Path, ...], skip_bad: bool, pretty: bool, request: str
) -> None:
    req = read_request(request)
    az = Loader(skip_bad).build(bundle, events)
    decision = az.check(req)
    click.echo(_dumps(decision, pretty))
    _finish(decision)


# -- rune explain ---------------------------------------------------------------------------


@click.command(
    cls=CedarExitCommand,
    short_help="Explain why one request is allowed or denied.",
    help=f"""Explain one decision: why the request is allowed or denied.

{_INPUTS}

Prints which side decided (the rule: allow = (Cedar permit or Datalog allow) and not (Cedar
forbid or Datalog deny)), the Cedar policies that applied with their text, or those that did
not, and Cedar's errors; then for Datalog's allow and deny either the derivation tree (each
tuple with the rule, line:column in the bundle's Datalog, that derived it, down to asserted
facts) or, when it does not hold, every rule tried and the body literal at which it failed.
--json prints the decision with its raw "explanation" object instead.

\b
Examples:
  rune explain '{{"principal": {{"type": "User", "id": "alice"}},
                "action": {{"type": "Action", "id": "write"}},
                "resource": {{"type": "Doc", "id": "design"}}}}'
  rune explain --bundle bundle.json --events facts.jsonl --json --pretty @request.json

{_EXIT_CODES}
""",
)
@input_options
@click.option(
    "--json", "as_json", is_flag=True, help='Print the decision with its raw "explanation" (JSON).'
)
@click.option("--pretty", is_flag=True, help="With --json: indent the JSON.")
@click.argument("request", metavar="REQUEST")
def explain(
    bundle: Path | None,
    events: tuple[Path, ...],
    skip_bad: bool,
    as_json: bool,
    pretty: bool,
    request: str,
) -> None:
    req = read_request(request)
    req["explain"] = True
    az = Loader(skip_bad).build(bundle, events)
    decision = az.check(req)
    click.echo(_dumps(decision, pretty) if as_json else render_explanation(az, req, decision))
    _finish(decision, report=as_json)
