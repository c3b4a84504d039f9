"""``rune benchmark``: in-process decision latency and throughput of the Authorizer."""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click
import orjson
from click.core import ParameterSource

from rune.authorizer import Authorizer
from rune.cli.inputs import (
    EXAMPLE_LABEL,
    CedarExitCommand,
    Loader,
    Source,
    example_source,
    input_options,
    json_lines,
    path_source,
)
from rune.policies.uids import kind

__all__ = ["benchmark"]


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


def _file_requests(source: Source, loader: Loader) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for number, line in json_lines(source):
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
    cls=CedarExitCommand,
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
@input_options
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
            loader = Loader(skip_bad)
            az = loader.build(bundle, events, cache_entries)
            source = (
                path_source(requests_file) if requests_file else example_source("requests.jsonl")
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
        click.echo(orjson.dumps(figures).decode())
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
