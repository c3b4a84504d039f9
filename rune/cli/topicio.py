"""``rune produce`` and ``rune consume``: RUNE's topics from the shell (through
:mod:`rune.client`).

``rune produce facts|bundle|requests FILE|-`` writes JSONL events (keyed and placed as ingest
requires; the whole input is checked before anything is produced), a bundle (JSON file or
source directory, validated first) or JSONL requests (key = id; ``--wait`` prints their
decisions). ``rune consume decisions|changes|dlq`` prints records, one per line (``--format
text`` readable, ``json`` the records), decisions deduplicated by id; it stops after
``--timeout`` seconds without a record unless ``--follow``.

Topic names and client settings come from the usual settings: ``--config``, ``RUNE_*``
variables, ``--topic ROLE=NAME``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import orjson

from rune.cli.bundle import validated_source
from rune.cli.options import load_from_flags
from rune.client import (
    ClientError,
    DecisionReader,
    FactProducer,
    Requests,
    Token,
)
from rune.client._kafka import CLIENT_DELIVERY_TIMEOUT_MS, Record, TopicReader
from rune.config import Settings
from rune.connectors.kafka.options import KafkaOptions
from rune.errors import RuneError
from rune.ivm.values import EntityRef
from rune.policies.decision import Decision
from rune.policies.errors import PolicyError
from rune.policies.refs import format_ref
from rune.policies.uids import kind
from rune.streams.changefeed import CHECKPOINT_KEY
from rune.streams.keys import event_key

__all__ = ["consume", "produce"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_IDLE_S: Final = 5.0


def _kafka_options(f: F) -> F:
    for decorate in reversed(
        [
            click.option(
                "--kafka",
                metavar="HOST:PORT",
                default=None,
                help="Kafka bootstrap address (kafka.bootstrap, env RUNE_KAFKA__BOOTSTRAP).",
            ),
            click.option(
                "--config",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                envvar="RUNE_CONFIG",
                help="TOML settings file: topic names, client id, librdkafka properties.",
            ),
            click.option(
                "--topic",
                "topic_overrides",
                multiple=True,
                metavar="ROLE=NAME",
                help="Topic name, e.g. facts=my.facts "
                "(roles: facts policies requests decisions changes dlq).",
            ),
        ]
    ):
        f = decorate(f)
    return f


def _settings(config: Path | None, kafka: str | None, topics: tuple[str, ...]) -> Settings:
    settings = load_from_flags(config, kafka, None, topics).settings
    if not settings.kafka.bootstrap:
        raise click.UsageError(
            "no Kafka bootstrap: pass --kafka HOST:PORT (or set kafka.bootstrap / "
            "RUNE_KAFKA__BOOTSTRAP)"
        )
    return settings


def _options(settings: Settings, client: str) -> KafkaOptions:
    k = settings.kafka
    return KafkaOptions(
        bootstrap=k.bootstrap,
        client_id=f"{k.client_id}-{client}",
        request_timeout_ms=k.request_timeout_ms,
        delivery_timeout_ms=CLIENT_DELIVERY_TIMEOUT_MS,
        librdkafka={name: v.get_secret_value() for name, v in k.librdkafka.items()},
    )


def _lines(source: str) -> Iterator[tuple[str, int, bytes]]:
    """``(label, line number, line)`` of every non-blank line of FILE or stdin."""
    if source == "-":
        stream = click.get_binary_stream("stdin")
        label = "stdin"
    else:
        try:
            stream = Path(source).open("rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise click.ClickException(f"{source}: cannot read: {exc.strerror or exc}") from None
        label = source
    with stream:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield label, number, line


def _objects(source: str, what: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for label, number, line in _lines(source):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(f"{label}:{number}: invalid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise click.ClickException(
                f"{label}:{number}: {what} is a JSON object, got {kind(value)}"
            )
        out.append((f"{label}:{number}", value))
    return out


def _fail(exc: RuneError) -> click.ClickException:
    return click.ClickException(str(exc))


# -- rune produce -----------------------------------------------------------------------------


@click.command(
    short_help="Produce facts, a bundle or requests to RUNE's topics.",
    help="""Produce to RUNE's topics: KIND is facts, bundle or requests; SOURCE a file or - (stdin).

\b
facts     JSONL fact/entity events of contract v1. Each record is keyed ("f:"/"e:" +
          canonical JSON) and placed (murmur2) as ingest requires; retract/delete events
          become tombstones. Every line is checked first (FILE:LINE on error, nothing
          produced). Prints the consistency token covering the records (JSON, the
          "consistency" field of a request).
bundle    a bundle JSON file, a source directory (*.dl, *.cedar, bundle.toml) or - (JSON).
          Validated first (errors at FILE:LINE:COLUMN); key = its name. Prints its token.
requests  JSONL requests (an "id" is added when missing; key = id). Prints the ids, or with
          --wait the decisions (JSONL) once all have one.

\b
Examples:
  rune produce --kafka localhost:9092 bundle policies/
  TOKEN=$(rune produce --kafka localhost:9092 facts facts.jsonl)
  rune produce --kafka localhost:9092 requests requests.jsonl --token "$TOKEN" --wait
""",
)
@_kafka_options
@click.argument("what", metavar="KIND", type=click.Choice(["facts", "bundle", "requests"]))
@click.argument("source", metavar="SOURCE")
@click.option("--name", default=None, help="bundle: the record key (default: the bundle's name).")
@click.option(
    "--version",
    "version",
    type=click.IntRange(0, 2**63 - 1),
    default=None,
    help="bundle: override the version.",
)
@click.option(
    "--token",
    "token_json",
    multiple=True,
    metavar="JSON",
    help="requests: attach this consistency token (what `produce facts` and `produce bundle` "
    "print; repeatable, merged) to requests that have none.",
)
@click.option("--wait", is_flag=True, help="requests: wait for the decisions and print them.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for acknowledgements (and decisions with --wait).",
)
def produce(
    kafka: str | None,
    config: Path | None,
    topic_overrides: tuple[str, ...],
    what: str,
    source: str,
    name: str | None,
    version: int | None,
    token_json: tuple[str, ...],
    wait: bool,
    timeout: float,
) -> None:
    settings = _settings(config, kafka, topic_overrides)
    if what != "bundle" and (name is not None or version is not None):
        raise click.UsageError("--name and --version are for bundles")
    if what != "requests" and (token_json or wait):
        raise click.UsageError("--token and --wait are for requests")
    try:
        if what == "facts":
            _produce_facts(settings, source, timeout)
        elif what == "bundle":
            _produce_bundle(settings, source, name, version, timeout)
        else:
            _produce_requests(settings, source, token_json, wait, timeout)
    except RuneError as exc:
        raise _fail(exc) from None


def _produce_facts(settings: Settings, source: str, timeout: float) -> None:
    events = _objects(source, "an event")
    from rune.authorizer import Authorizer

    checker = Authorizer(cache_entries=0)
    for where, event in events:  # all or nothing: check every line first
        try:
            checker.validate_events([event], prefix="")
            event_key(event)
        except RuneError as exc:
            raise click.ClickException(f"{where}: invalid event: {exc}") from None
    producer = FactProducer(_options(settings, "producer"), settings.topics, validate=False)
    for _, event in events:
        producer.send_event(event)
    token = producer.flush(timeout)
    click.echo(orjson.dumps(token.consistency()).decode())
    parts = sum(len(p) for p in token.offsets.values())
    click.echo(
        f"rune: {len(events)} event(s) produced to {settings.topics.facts} ({parts} partition(s))",
        err=True,
    )


def _produce_bundle(
    settings: Settings, source: str, name: str | None, version: int | None, timeout: float
) -> None:
    if source == "-":
        try:
            raw = orjson.loads(click.get_binary_stream("stdin").read())
        except orjson.JSONDecodeError as exc:
            raise click.ClickException(f"stdin: invalid JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise click.ClickException(f"stdin: a bundle is a JSON object, got {kind(raw)}")
        if version is not None:
            raw["version"] = version
        from rune.authorizer import Authorizer

        try:
            Authorizer(cache_entries=0).validate_bundle(raw)
        except PolicyError as exc:
            raise click.ClickException(f"stdin: bundle rejected: {exc}") from None
        bundle: Any = raw
        label = "stdin"
    else:
        path = Path(source)
        if not path.exists():
            raise click.ClickException(f"{source}: no such file or directory")
        bundle = validated_source(path, version)
        label = source
    producer = FactProducer(_options(settings, "producer"), settings.topics, validate=False)
    token = producer.publish_bundle(bundle, name, timeout)
    click.echo(orjson.dumps(token.consistency()).decode())
    body = bundle.bundle if not isinstance(bundle, dict) else bundle
    click.echo(
        f"rune: bundle version {body.get('version')} from {label} produced to "
        f"{settings.topics.policies}",
        err=True,
    )


def _produce_requests(
    settings: Settings, source: str, token_json: tuple[str, ...], wait: bool, timeout: float
) -> None:
    token = Token()
    for text in token_json:
        try:
            token = token.merge(Token.from_json(orjson.loads(text)))
        except (orjson.JSONDecodeError, ClientError) as exc:
            raise click.BadParameter(str(exc), param_hint="--token") from None
    requests = _objects(source, "a request")
    for where, request in requests:
        rid = request.get("id")
        if rid is not None and not isinstance(rid, str):
            raise click.ClickException(f"{where}: 'id' must be a string")
    client = Requests(_options(settings, "requests"), settings.topics)
    try:
        ids = []
        for _, request in requests:
            if token and "consistency" not in request:
                request["consistency"] = token.consistency()
            ids.append(client.send(request))
        if not wait:
            client.close()
            for rid in ids:
                click.echo(rid)
        else:
            decisions = client.wait_all(ids, timeout)
            for rid in ids:
                click.echo(orjson.dumps(decisions[rid].to_json()).decode())
    finally:
        client.close()
    click.echo(f"rune: {len(ids)} request(s) produced to {settings.topics.requests}", err=True)


# -- rune consume -----------------------------------------------------------------------------


def _ref(value: object) -> str:
    if isinstance(value, dict) and set(value) == {"type", "id"}:
        return format_ref(EntityRef(str(value["type"]), str(value["id"])))
    return orjson.dumps(value).decode()


def _decision_text(d: Decision) -> str:
    parts = [str(d.id), d.decision.upper(), f"v{d.policy_version}"]
    if d.request:
        r = d.request
        parts.append(" ".join(_ref(r.get(k)) for k in ("principal", "action", "resource")))
    if d.reasons:
        parts.append("reasons: " + ", ".join(d.reasons))
    if d.errors:
        parts.append("errors: " + "; ".join(d.errors))
    if d.error:
        parts.append(f"error: {d.error}")
    return "  ".join(parts)


def _watermark(mark: dict[str, dict[str, int]]) -> str:
    return " ".join(
        f"{t}[{','.join(f'{p}:{o}' for p, o in sorted(ps.items()))}]" for t, ps in mark.items()
    )


def _change_text(r: Record) -> str:
    if r.key == CHECKPOINT_KEY:
        try:
            c = orjson.loads(r.value or b"null")
            return (
                f"checkpoint  partition {r.partition}  v{c.get('policy_version')}  "
                f"{_watermark(c.get('watermark') or {})}"
            )
        except (orjson.JSONDecodeError, AttributeError):
            return f"checkpoint  partition {r.partition}  (unreadable)"
    try:
        row = orjson.loads(r.key or b"null")
        text = f"{row[0]}({', '.join(_ref(v) for v in row[1:])})"
    except (orjson.JSONDecodeError, TypeError, IndexError, KeyError):
        text = repr(r.key)
    return f"{'-' if r.value is None else '+'} {text}"


def _change_json(r: Record) -> dict[str, Any]:
    def parse(raw: bytes | None) -> Any:
        if raw is None:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw.decode(errors="replace")

    return {
        "partition": r.partition,
        "offset": r.offset,
        "key": parse(r.key),
        "value": parse(r.value),
    }


def _checkpoint_body(value: bytes | None) -> bytes | None:
    """A checkpoint without its instance and time: what it says about completeness."""
    try:
        c = orjson.loads(value or b"null")
        return orjson.dumps(
            [c.get("policy_version"), c.get("watermark")], option=orjson.OPT_SORT_KEYS
        )
    except (orjson.JSONDecodeError, AttributeError):
        return value


def _dlq_text(r: Record) -> str:
    try:
        d = orjson.loads(r.value or b"null")
        key = base64.b64decode(d.get("key_b64") or "").decode(errors="replace")
        if len(key) > 80:
            key = key[:77] + "..."
        where = f"{d.get('topic')}/{d.get('partition')}/{d.get('offset')}"
        return f"{where}  {d.get('stage')}: {d.get('error')}  key={key or '-'}"
    except (orjson.JSONDecodeError, AttributeError, ValueError):
        return f"(unreadable dead letter at {r.partition}/{r.offset})"


@click.command(
    short_help="Print decisions, changefeed records or dead letters.",
    help="""Print the records of RUNE's decision, changes or dead-letter topic, one per line.

\b
decisions  typed decisions, each request id once (the topic is at-least-once)
           text: ID  ALLOW|DENY  vVERSION  [principal action resource]  reasons: ...
changes    the changefeed: "+ rel(args)" present, "- rel(args)" removed, checkpoints
dlq        dead letters: TOPIC/PARTITION/OFFSET  STAGE: ERROR  key=...

Reads every partition from the end (new records only) or, with --from-beginning, from the
start; stops once --timeout seconds pass without a record, or --max records were printed,
unless --follow (then it runs until interrupted). --format json prints the records as JSON.

\b
Examples:
  rune consume --kafka localhost:9092 decisions --follow
  rune consume --kafka localhost:9092 changes --from-beginning --timeout 2
  rune consume --kafka localhost:9092 dlq --from-beginning --format json
""",
)
@_kafka_options
@click.argument("what", metavar="TOPIC", type=click.Choice(["decisions", "changes", "dlq"]))
@click.option("--from-beginning", is_flag=True, help="Start at the beginning of the topic.")
@click.option("--follow", is_flag=True, help="Keep reading until interrupted.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=DEFAULT_IDLE_S,
    show_default=True,
    help="Stop after this many seconds without a record (unless --follow).",
)
@click.option(
    "--max", "max_records", type=click.IntRange(min=1), default=None, help="Stop after N records."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One readable line per record, or the record as JSON.",
)
@click.option(
    "--committed-only",
    is_flag=True,
    help="decisions: read_committed (services with kafka.exactly_once).",
)
def consume(
    kafka: str | None,
    config: Path | None,
    topic_overrides: tuple[str, ...],
    what: str,
    from_beginning: bool,
    follow: bool,
    timeout: float,
    max_records: int | None,
    fmt: str,
    committed_only: bool,
) -> None:
    settings = _settings(config, kafka, topic_overrides)
    options = _options(settings, "consume")
    start = "beginning" if from_beginning else "end"
    printed = 0
    quiet: set[int] = set()
    """Indexes of the lines of a poll that are checkpoints (they do not count as activity)."""
    try:
        if what == "decisions":
            reader = DecisionReader(
                options, settings.topics, from_beginning=from_beginning,
                committed_only=committed_only,
            )  # fmt: skip

            def poll(wait: float) -> list[str]:
                return [
                    orjson.dumps(d.to_json()).decode() if fmt == "json" else _decision_text(d)
                    for d in reader.poll(wait)
                ]

            close = reader.close
        else:
            topic = settings.topics.changes if what == "changes" else settings.topics.dlq
            raw = TopicReader(options, topic, start)  # type: ignore[arg-type]

            last_checkpoint: dict[int, bytes | None] = {}

            def poll(wait: float) -> list[str]:
                out: list[str] = []
                for r in raw.poll(wait):
                    if r.key == CHECKPOINT_KEY and what == "changes":
                        # periodic: shown when it says something new, never activity
                        body = _checkpoint_body(r.value)
                        if last_checkpoint.get(r.partition, b"") == body:
                            continue
                        last_checkpoint[r.partition] = body
                        quiet.add(len(out))
                    if fmt == "json":
                        value = (
                            _change_json(r)
                            if what == "changes"
                            else orjson.loads(r.value or b"null")
                        )
                        out.append(orjson.dumps(value).decode())
                    else:
                        out.append(_change_text(r) if what == "changes" else _dlq_text(r))
                return out

            close = raw.close
    except RuneError as exc:
        raise _fail(exc) from None
    try:
        idle_since = time.monotonic()
        while follow or time.monotonic() - idle_since < timeout:
            left = timeout - (time.monotonic() - idle_since)
            quiet.clear()
            lines = poll(0.5 if follow else max(0.0, min(0.5, left)))
            if len(lines) > len(quiet):
                idle_since = time.monotonic()
            for line in lines:
                click.echo(line)
                printed += 1
                if max_records is not None and printed >= max_records:
                    return
    except KeyboardInterrupt:
        pass
    except RuneError as exc:
        raise _fail(exc) from None
    finally:
        close()
        click.echo(f"rune: {printed} record(s) from {what}", err=True)
