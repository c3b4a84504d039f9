"""``rune check``, ``rune explain``, ``rune benchmark``: the authorizer offline, in-process.

Each command builds one :class:`rune.Authorizer` from files (a policy bundle as JSON, fact and
entity events of contract v1 as JSONL) or, for ``benchmark``, from the generated "drive"
workload (:mod:`rune.workloads.drive`). Without ``--bundle`` the bundled example
(``rune/examples/drive``) is used, with its events unless ``--events`` is given.

Exit codes of ``check`` and ``explain`` follow the Cedar CLI: 0 allow, 2 deny, 1 for any error
(usage errors included, so that 2 always means deny).
"""

from __future__ import annotations

import gc
import math
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any, Final, TypeVar

import cedarpy
import click
import orjson
from click.core import ParameterSource

from rune.authorizer import Authorizer
from rune.cli.bundle import bundle_option, validated_source
from rune.errors import RuneError
from rune.policies.bundle import Bundle
from rune.policies.errors import RequestError
from rune.policies.uids import kind, parse_uid

__all__ = ["benchmark", "check", "explain"]

EXAMPLE: Final = resources.files("rune") / "examples" / "drive"
EXAMPLE_LABEL: Final = "rune/examples/drive"

EXIT_ALLOW: Final = 0
EXIT_ERROR: Final = 1
EXIT_DENY: Final = 2

DEFAULT_ID: Final = "check"
"""The request id used when REQUEST has none."""

EVENT_CHUNK: Final = 5000
"""Events applied per ``apply_batch``; a chunk with a bad event is retried one by one."""

F = TypeVar("F", bound=Callable[..., Any])


class _Command(click.Command):
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


# -- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """A file to read: ``label`` names it in messages (``label:line``)."""

    label: str
    open: Callable[[], IO[bytes]]


def _path_source(path: Path) -> _Source:
    if str(path) == "-":
        return _Source("stdin", lambda: click.get_binary_stream("stdin"))
    return _Source(str(path), lambda: path.open("rb"))


def _example_source(name: str) -> _Source:
    return _Source(f"{EXAMPLE_LABEL}/{name}", lambda: (EXAMPLE / name).open("rb"))


def _read(source: _Source) -> bytes:
    try:
        with source.open() as stream:
            return stream.read()
    except OSError as exc:
        raise click.ClickException(f"{source.label}: cannot read: {exc.strerror or exc}") from None


def _json_lines(source: _Source) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of every non-blank line."""
    try:
        with source.open() as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line
    except OSError as exc:
        raise click.ClickException(f"{source.label}: cannot read: {exc.strerror or exc}") from None


def _input_options(f: F) -> F:
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


class _Loader:
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
        source = _path_source(bundle) if bundle else _example_source("bundle.json")
        try:
            raw = orjson.loads(_read(source))
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
            sources = [_path_source(p) for p in events]
        else:
            sources = [] if bundle else [_example_source("events.jsonl")]
        for s in sources:
            self.apply_file(az, s)
        return az

    def apply_file(self, az: Authorizer, source: _Source) -> None:
        chunk: list[tuple[int, dict[str, Any]]] = []
        for number, line in _json_lines(source):
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
        self, az: Authorizer, source: _Source, chunk: list[tuple[int, dict[str, Any]]]
    ) -> None:
        if not chunk:
            return
        try:
            az.apply_batch([event for _, event in chunk])  # all or nothing
            self.applied += len(chunk)
            return
        except RuneError:
            pass
        for number, event in chunk:  # locate the bad events; in order, so the result is equal
            try:
                az.apply(event)
                self.applied += 1
            except RuneError as exc:
                self.bad(f"{source.label}:{number}: event rejected: {exc}")


def _read_request(spec: str) -> dict[str, Any]:
    """REQUEST: inline JSON, ``@FILE`` or ``-`` (stdin); a missing ``id`` becomes ``check``."""
    if spec == "-":
        label, raw = "REQUEST (stdin)", _read(_path_source(Path("-")))
    elif spec.startswith("@"):
        label, raw = spec[1:], _read(_path_source(Path(spec[1:])))
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
    cls=_Command,
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
@_input_options
@click.option("--pretty", is_flag=True, help="Indent the decision JSON.")
@click.argument("request", metavar="REQUEST")
def check(
    bundle: Path | None, events: tuple[Path, ...], skip_bad: bool, pretty: bool, request: str
) -> None:
    req = _read_request(request)
    az = _Loader(skip_bad).build(bundle, events)
    decision = az.check(req)
    click.echo(_dumps(decision, pretty))
    _finish(decision)


# -- rune explain ---------------------------------------------------------------------------


@click.command(
    cls=_Command,
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
@_input_options
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
    req = _read_request(request)
    req["explain"] = True
    az = _Loader(skip_bad).build(bundle, events)
    decision = az.check(req)
    click.echo(_dumps(decision, pretty) if as_json else render_explanation(az, req, decision))
    _finish(decision, report=as_json)


def _policy_name(pid: str, bundle: Bundle | None) -> str:
    info = bundle.info.get(pid) if bundle is not None else None
    if info is not None and info.annotation_id is not None:
        return f'{pid} @id("{info.annotation_id}")'
    return pid


def _policy_text(pid: str, bundle: Bundle | None) -> str | None:
    """The static policy ``pid`` as Cedar text (Cedar's own formatting), when available."""
    if bundle is None:
        return None
    try:
        cedar = bundle.cedar
        est: Any = (
            orjson.loads(cedarpy.policies_to_json_str(cedar)) if isinstance(cedar, str) else cedar
        )
        body = est.get("staticPolicies", {}).get(pid)
        if body is None:
            return None
        one = {"staticPolicies": {pid: body}, "templates": {}, "templateLinks": []}
        text: str = cedarpy.policies_from_json_str(orjson.dumps(one).decode())
        return text.strip()
    except Exception:  # the text is a courtesy; the id is what matters
        return None


def _why(decision: dict[str, Any], expl: dict[str, Any], bundle: Bundle | None) -> str:
    cedar = expl.get("cedar", {})
    datalog = expl.get("datalog", {})
    applied = ", ".join(_policy_name(p["id"], bundle) for p in cedar.get("determining", []))
    permits = [f"Cedar permit {applied} applies"] if cedar.get("decision") == "Allow" else []
    forbids = [f"Cedar forbid {applied} applies"] if cedar.get("effect") == "forbid" else []
    if datalog.get("allow", {}).get("holds"):
        permits.append("Datalog derives allow")
    if datalog.get("deny", {}).get("holds"):
        forbids.append("Datalog derives deny")
    if cedar.get("evaluated") and cedar.get("decision") is None:
        forbids.append("Cedar could not evaluate the request (fail closed)")
    if decision["decision"] == "allow":
        return f"allowed: {' and '.join(permits)}; nothing forbids it"
    if forbids:
        overridden = f", overriding: {' and '.join(permits)}" if permits else ""
        return f"denied: {' and '.join(forbids)}{overridden}"
    return "denied: nothing allows it (no Cedar permit applies, Datalog does not derive allow)"


def _render_cedar(cedar: dict[str, Any], bundle: Bundle | None) -> list[str]:
    if not cedar.get("evaluated"):
        return ["Cedar: not evaluated (the bundle has no Cedar policies and no schema)"]
    size = cedar.get("slice_entities", 0)
    head = f"Cedar (on a slice of {size} entities):"
    decision = cedar.get("decision")
    lines: list[str] = []
    if decision is None:
        lines.append(f"{head} could not evaluate the request (fail closed)")
    elif cedar.get("determining"):
        lines.append(f"{head} {decision}")
        for policy in cedar["determining"]:
            lines.append(f"  {policy['effect']} {_policy_name(policy['id'], bundle)} applies")
            text = _policy_text(policy["id"], bundle)
            if text:
                lines.append(textwrap.indent(text, "    "))
    else:
        lines.append(f"{head} no policy applies")
    if cedar.get("not_applicable"):
        names = ", ".join(_policy_name(p, bundle) for p in cedar["not_applicable"])
        lines.append(f"  not applicable: {names}")
    if cedar.get("errors"):
        lines.append("  errors (an erroring policy does not apply):")
        lines.extend(f"    {e}" for e in cedar["errors"])
    return lines


def _render_datalog(az: Authorizer, request: dict[str, Any], datalog: dict[str, Any]) -> list[str]:
    """Datalog's allow and deny, rendered by the engine's own explanation renderers."""
    try:
        row = tuple(
            parse_uid(request[k], k, RequestError) for k in ("principal", "action", "resource")
        )
    except (KeyError, RequestError):  # pragma: no cover - a decided request has all three
        return []
    lines: list[str] = []
    rendered = False
    for relation in ("allow", "deny"):
        part = datalog.get(relation)
        if part is None:
            continue
        if part.get("defined") is False:
            lines.append(f"Datalog {relation}: not defined by the bundle")
            continue
        lines.append(f"Datalog {relation}: {'holds' if part['holds'] else 'does not hold'}")
        result = az.engine.explain(relation, row)
        text = result.render() if hasattr(result, "render") else f"{result}\n"
        lines.append(textwrap.indent(text.rstrip("\n"), "  "))
        rendered = True
    bundle = az.bundle
    if rendered and bundle is not None:
        own = len(bundle.datalog.splitlines())
        lines.append(
            f"(line:column refer to the bundle's Datalog; lines after {own} are RUNE's "
            "built-in rules, see docs/authorizer.md)"
        )
    return lines


def render_explanation(az: Authorizer, request: dict[str, Any], decision: dict[str, Any]) -> str:
    """The decision and its explanation as text (``rune explain``)."""
    bundle = az.bundle
    lines = [
        f"{decision['id']}: {decision['decision'].upper()}"
        f"  (policy version {decision['policy_version']})"
    ]
    expl = decision.get("explanation")
    if "error" in decision:
        lines.append(f"  the request could not be evaluated: {decision['error']}")
        return "\n".join(lines)
    if not isinstance(expl, dict):  # pragma: no cover - explain was asked for
        return "\n".join(lines)
    lines.append(f"  {_why(decision, expl, bundle)}")
    if decision["reasons"]:
        lines.append(f"  reasons: {', '.join(decision['reasons'])}")
    lines.append(f"  rule: {expl['rule']}")
    lines.append("")
    lines.extend(_render_cedar(expl.get("cedar", {}), bundle))
    datalog = _render_datalog(az, request, expl.get("datalog", {}))
    if datalog:
        lines.append("")
        lines.extend(datalog)
    return "\n".join(lines)


# -- rune benchmark -------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    latencies_ns: list[int]
    allowed: int = 0
    errors: int = 0
    first_error: str | None = None


def _percentile(sorted_values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i] / 1000


@contextmanager
def _timed(into: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    into[key] = round(time.perf_counter() - start, 3)


def _measure(
    az: Authorizer, requests: Sequence[dict[str, Any]], threads: int
) -> tuple[float, list[_Tally]]:
    """Decide ``requests`` on ``threads`` threads sharing ``az`` behind one lock.

    Thread ``t`` takes requests ``t, t + threads, ...``; a latency is the time from asking for
    the lock to the decision (the wait for the lock included). Returns the elapsed seconds from
    the common start to the last decision, and one tally per thread.
    """
    lock = threading.Lock()
    tallies = [_Tally([]) for _ in range(threads)]
    failures: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        mine = requests[t::threads]
        tally = tallies[t]
        lat = tally.latencies_ns
        clock = time.perf_counter_ns
        start.wait()
        try:
            for request in mine:
                t0 = clock()
                with lock:
                    decision = az.check(request)
                lat.append(clock() - t0)
                if decision["decision"] == "allow":
                    tally.allowed += 1
                elif "error" in decision:
                    tally.errors += 1
                    if tally.first_error is None:
                        tally.first_error = f"{decision['id']}: {decision['error']}"
        except BaseException as exc:  # pragma: no cover - check never raises on input
            failures.append(exc)

    workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t_start = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t_start
    if failures:  # pragma: no cover
        raise failures[0]
    return elapsed, tallies


def _file_requests(source: _Source, loader: _Loader) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for number, line in _json_lines(source):
        try:
            request = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            loader.bad(f"{source.label}:{number}: invalid JSON: {exc}")
            continue
        if not isinstance(request, dict):
            loader.bad(f"{source.label}:{number}: a request is a JSON object, got {kind(request)}")
            continue
        out.append(request)
    return out


_DRIVE_ONLY: Final = ("scale", "seed", "cedar")


@click.command(
    cls=_Command,
    short_help="Measure in-process decision latency and throughput.",
    help="""Measure in-process decision latency and throughput of the Authorizer.

Builds one Authorizer, decides W warm-up requests (not measured), then N measured requests
spread over T threads, and prints p50/p95/p99 latency, decisions/s and the share of measured
decisions answered from the decision cache (--json: one JSON object instead).

Workload: the "drive" workload of docs/design.md §6 generated at --scale (the default 0.01,
~1k users, ~5k documents, ~13k facts, runs in seconds), with Cedar policies and entities
(hybrid decisions) unless --no-cedar; the requests are --distinct different ones (default: all
W + N different), cycled. Or your files: --bundle, --events, --requests-file (cycled to W + N
requests; --bundle needs --requests-file, both default to the bundled example).

Threads share the one Authorizer, which is not thread-safe, behind a lock: with the GIL and the
lock, threads model concurrent clients (a latency includes the wait for the lock), not a
parallel speed-up; throughput does not grow with T.

\b
Examples:
  rune benchmark
  rune benchmark --requests 50000 --threads 4 --warm-up 5000 --scale 0.1 --no-cache
  rune benchmark --bundle b.json --events facts.jsonl --requests-file requests.jsonl --json

\b
Exit codes:
  0  done (figures printed)
  1  error: a bad option, a bad bundle, a bad event or request line (named FILE:LINE)
""",
)
@click.option(
    "--requests",
    "n",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Measured requests (N).",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Client threads (T) sharing the Authorizer.",
)
@click.option(
    "--warm-up",
    "warm_up",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Requests decided first and left out of every figure (W).",
)
@click.option(
    "--scale",
    type=click.FloatRange(min=0, min_open=True),
    default=0.01,
    show_default=True,
    help="Size of the drive workload (1.0 = docs/design.md §6: 100k users, 1.2M facts).",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Drive workload seed.")
@click.option(
    "--cedar/--no-cedar",
    default=True,
    show_default=True,
    help="Drive workload: add Cedar policies and entities (hybrid), or Datalog only.",
)
@click.option(
    "--distinct",
    type=click.IntRange(min=1),
    default=None,
    help="Number of different requests, cycled (drive default: W + N; with --requests-file: "
    "its first K requests, default all).",
)
@click.option("--no-cache", is_flag=True, help="Turn the decision cache off.")
@_input_options
@click.option(
    "--requests-file",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Requests as JSONL ('-' for stdin), instead of the drive workload's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every figure.")
@click.pass_context
def benchmark(
    ctx: click.Context,
    n: int,
    threads: int,
    warm_up: int,
    scale: float,
    seed: int,
    cedar: bool,
    distinct: int | None,
    no_cache: bool,
    bundle: Path | None,
    events: tuple[Path, ...],
    skip_bad: bool,
    requests_file: Path | None,
    as_json: bool,
) -> None:
    files = bundle is not None or bool(events) or requests_file is not None
    if files:
        given = [
            f"--{name}"
            for name in _DRIVE_ONLY
            if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)}: drive workload options, not for --bundle/--events/"
                "--requests-file"
            )
        if bundle is not None and requests_file is None:
            raise click.UsageError("--bundle needs --requests-file")
    total = warm_up + n
    figures: dict[str, Any] = {}
    cache_entries = 0 if no_cache else 100_000
    with _timed(figures, "setup_s"):
        if files:
            loader = _Loader(skip_bad)
            az = loader.build(bundle, events, cache_entries)
            source = (
                _path_source(requests_file) if requests_file else _example_source("requests.jsonl")
            )
            pool = _file_requests(source, loader)
            if distinct is not None:
                pool = pool[:distinct]
            if not pool:
                raise click.ClickException(f"{source.label}: no requests")
            figures["workload"] = {
                "bundle": str(bundle) if bundle else f"{EXAMPLE_LABEL}/bundle.json",
                "events_applied": loader.applied,
                "events_skipped": loader.skipped,
                "requests_file": source.label,
            }
        else:
            from rune.workloads import drive

            facts = drive.generate(scale, seed)
            az = Authorizer(cache_entries=cache_entries)
            az.load_bundle(drive.bundle(cedar=cedar))
            batch = drive.fact_events(facts)
            if cedar:
                batch += drive.entity_events(facts, seed)
            for i in range(0, len(batch), 50_000):
                az.apply_batch(batch[i : i + 50_000])
            pool = drive.check_requests(facts, min(distinct or total, total), seed)
            figures["workload"] = {
                "drive": {"scale": scale, "seed": seed, "cedar": cedar},
                "base_facts": sum(len(rows) for rows in facts.values()),
                "events_applied": len(batch),
            }
    stream = [pool[i % len(pool)] for i in range(total)]
    gc.collect()  # start the measurement without the setup's garbage
    for request in stream[:warm_up]:
        az.check(request)
    before = az.cache_stats()
    elapsed, tallies = _measure(az, stream[warm_up:], threads)
    after = az.cache_stats()

    lat = sorted(x for t in tallies for x in t.latencies_ns)
    hits = after.hits - before.hits
    errors = sum(t.errors for t in tallies)
    figures.update(
        {
            "requests": n,
            "measured": len(lat),
            "warm_up": warm_up,
            "threads": threads,
            "distinct": len(pool),
            "cache": not no_cache,
            "p50_us": _percentile(lat, 0.50),
            "p95_us": _percentile(lat, 0.95),
            "p99_us": _percentile(lat, 0.99),
            "max_us": lat[-1] / 1000,
            "mean_us": round(sum(lat) / len(lat) / 1000, 3),
            "elapsed_s": round(elapsed, 6),
            "decisions_per_s": round(len(lat) / elapsed, 1) if elapsed > 0 else math.inf,
            "cache_hit_share": round(hits / len(lat), 4),
            "allow_share": round(sum(t.allowed for t in tallies) / len(lat), 4),
            "errors": errors,
        }
    )
    first_error = next((t.first_error for t in tallies if t.first_error), None)
    if first_error is not None:
        click.echo(
            f"rune: {errors} measured requests could not be evaluated (first: {first_error})",
            err=True,
        )
    if as_json:
        click.echo(_dumps(figures, False))
        return
    click.echo(_report(figures))


def _report(f: dict[str, Any]) -> str:
    w = f["workload"]
    if "drive" in w:
        d = w["drive"]
        kind_ = "Datalog + Cedar" if d["cedar"] else "Datalog only"
        what = (
            f"drive, scale {d['scale']}, seed {d['seed']} ({kind_}): {w['base_facts']:,} base "
            f"facts, {w['events_applied']:,} events applied"
        )
    else:
        skipped = f", {w['events_skipped']:,} skipped" if w["events_skipped"] else ""
        what = (
            f"{w['bundle']}, {w['events_applied']:,} events applied{skipped}, "
            f"requests from {w['requests_file']}"
        )
    threads = f"{f['threads']} thread{'s' if f['threads'] > 1 else ''}"
    cache = "cache on" if f["cache"] else "cache off"
    return "\n".join(
        [
            f"workload    {what} (setup {f['setup_s']:.1f} s)",
            f"measured    {f['requests']:,} requests after {f['warm_up']:,} warm-up, {threads} "
            f"sharing one Authorizer behind a lock, {f['distinct']:,} distinct, {cache}",
            f"latency     p50 {f['p50_us']:.1f} us   p95 {f['p95_us']:.1f} us   "
            f"p99 {f['p99_us']:.1f} us   max {f['max_us']:.1f} us   mean {f['mean_us']:.1f} us",
            f"throughput  {f['decisions_per_s']:,.0f} decisions/s",
            f"cache       {100 * f['cache_hit_share']:.1f} % of measured decisions were hits",
            f"decisions   {100 * f['allow_share']:.1f} % allow, {f['errors']:,} could not be "
            "evaluated",
        ]
    )
