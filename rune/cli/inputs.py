"""Inputs of the offline commands (``rune check``, ``explain``, ``benchmark``, ``test``): a
policy bundle (JSON file or directory), fact/entity event files (JSONL), requests; the
bundled example when none is given. Every bad input is reported with its place
(``FILE:LINE``); ``--skip-bad`` skips bad event lines instead of failing.

Exit codes of ``check`` and ``explain`` follow the Cedar CLI: 0 allow, 2 deny, 1 for any error
(usage errors included, so that 2 always means deny): :class:`CedarExitCommand`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import click
import orjson

from rune.authorizer import Authorizer
from rune.cli.bundle import bundle_option, validated_source
from rune.errors import RuneError
from rune.policies.uids import kind

__all__ = [
    "DEFAULT_ID",
    "EXAMPLE",
    "EXAMPLE_LABEL",
    "EXIT_DENY",
    "EXIT_ERROR",
    "CedarExitCommand",
    "Loader",
    "Source",
    "example_source",
    "input_options",
    "json_lines",
    "path_source",
    "read_request",
    "read_source",
]

EXAMPLE: Final = resources.files("rune") / "examples" / "drive"
"""The bundled example (bundle, events, requests): the default input of every command."""
EXAMPLE_LABEL: Final = "rune/examples/drive"

EXIT_ALLOW: Final = 0
EXIT_ERROR: Final = 1
EXIT_DENY: Final = 2

DEFAULT_ID: Final = "check"
"""The request id used when REQUEST has none."""

EVENT_CHUNK: Final = 5000
"""Events applied per ``apply_each``; a chunk with a bad event is applied one by one."""

F = TypeVar("F", bound=Callable[..., Any])


class CedarExitCommand(click.Command):
    """A command whose usage errors exit 1: exit code 2 means deny (as in the Cedar CLI)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            exc.exit_code = EXIT_ERROR
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.exit_code = EXIT_ERROR
            raise


@dataclass(frozen=True, slots=True)
class Source:
    """A file to read: ``label`` names it in messages (``label:line``)."""

    label: str
    open: Callable[[], IO[bytes]]


def path_source(path: Path) -> Source:
    if str(path) == "-":
        return Source("stdin", lambda: click.get_binary_stream("stdin"))
    return Source(str(path), lambda: path.open("rb"))


def example_source(name: str) -> Source:
    return Source(f"{EXAMPLE_LABEL}/{name}", lambda: (EXAMPLE / name).open("rb"))


def read_source(source: Source) -> bytes:
    try:
        with source.open() as stream:
            return stream.read()
    except OSError as exc:
        raise click.ClickException(f"{source.label}: cannot read: {exc.strerror or exc}") from None


def json_lines(source: Source) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line."""
    try:
        with source.open() as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line
    except OSError as exc:
        raise click.ClickException(f"{source.label}: cannot read: {exc.strerror or exc}") from None


def input_options(f: F) -> F:
    """``--bundle``, ``--events``, ``--skip-bad``: shared by the three commands."""
    f = click.option(
        "--skip-bad",
        is_flag=True,
        help="Skip bad event lines (each is reported on stderr as FILE:LINE) instead of failing.",
    )(f)
    f = click.option(
        "--events",
        "events",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Fact and entity events of contract v1, one JSON object per line (repeatable; "
        "applied in order). Default: the example's events when --bundle is omitted, else none.",
    )(f)
    f = bundle_option(
        "Policy bundle: a JSON file (version, datalog, cedar, schema) or a directory of *.dl, "
        "*.cedar, *.cedarschema and bundle.toml files. Default: the bundled example "
        "(rune/examples/drive)."
    )(f)
    return f


class Loader:
    """Builds an Authorizer from a bundle file and event files, locating every bad input."""

    def __init__(self, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.applied = 0
        self.skipped = 0

    def bad(self, message: str) -> None:
        if not self.skip_bad:
            raise click.ClickException(f"{message} (--skip-bad skips bad lines)")
        self.skipped += 1
        click.echo(f"rune: skipped {message}", err=True)

    def build(
        self, bundle: Path | None, events: Sequence[Path], cache_entries: int = 100_000
    ) -> Authorizer:
        az = Authorizer(cache_entries=cache_entries)
        if bundle is not None and bundle.is_dir():  # sources: errors at FILE:LINE:COLUMN
            az.load_bundle(validated_source(bundle).bundle)
            return self._apply_events(az, bundle, events)
        source = path_source(bundle) if bundle else example_source("bundle.json")
        try:
            raw = orjson.loads(read_source(source))
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(f"{source.label}: invalid JSON: {exc}") from None
        try:
            az.load_bundle(raw)
        except RuneError as exc:
            raise click.ClickException(f"{source.label}: bundle rejected: {exc}") from None
        return self._apply_events(az, bundle, events)

    def _apply_events(
        self, az: Authorizer, bundle: Path | None, events: Sequence[Path]
    ) -> Authorizer:
        if events:
            sources = [path_source(p) for p in events]
        else:
            sources = [] if bundle else [example_source("events.jsonl")]
        for s in sources:
            self.apply_file(az, s)
        return az

    def apply_file(self, az: Authorizer, source: Source) -> None:
        chunk: list[tuple[int, dict[str, Any]]] = []
        for number, line in json_lines(source):
            try:
                event = orjson.loads(line)
                problem = (
                    None
                    if isinstance(event, dict)
                    else f"an event is a JSON object, got {kind(event)}"
                )
            except orjson.JSONDecodeError as exc:
                problem = f"invalid JSON: {exc}"
            if problem is not None:
                self._apply(az, source, chunk)  # the lines before first: errors in file order
                chunk = []
                self.bad(f"{source.label}:{number}: {problem}")
                continue
            chunk.append((number, event))
            if len(chunk) >= EVENT_CHUNK:
                self._apply(az, source, chunk)
                chunk = []
        self._apply(az, source, chunk)

    def _apply(
        self, az: Authorizer, source: Source, chunk: list[tuple[int, dict[str, Any]]]
    ) -> None:
        if not chunk:
            return
        _, rejected = az.apply_each([event for _, event in chunk])
        self.applied += len(chunk) - len(rejected)
        for i, exc in rejected:  # in order, as applying them one by one would
            self.bad(f"{source.label}:{chunk[i][0]}: event rejected: {exc}")


def read_request(spec: str) -> dict[str, Any]:
    """REQUEST: inline JSON, ``@FILE`` or ``-`` (stdin); a missing ``id`` becomes ``check``."""
    if spec == "-":
        label, raw = "REQUEST (stdin)", read_source(path_source(Path("-")))
    elif spec.startswith("@"):
        label, raw = spec[1:], read_source(path_source(Path(spec[1:])))
    else:
        label, raw = "REQUEST", spec.encode()
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"{label}: invalid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise click.ClickException(f"{label}: a request is a JSON object, got {kind(request)}")
    request.setdefault("id", DEFAULT_ID)
    return request
