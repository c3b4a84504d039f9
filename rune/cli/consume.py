"""``rune consume decisions|changes|dlq``: print the records of RUNE's topics, one per line
(through :mod:`rune.client`).

``--format text`` is readable, ``json`` the records; decisions are deduplicated by id. It
stops after ``--timeout`` seconds without a record unless ``--follow``.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any, Final

import click
import orjson

from rune.cli.client_options import (
    client_options,
    client_settings,
    command_failure,
    kafka_options,
)
from rune.client import DecisionReader
from rune.client._kafka import Record, TopicReader
from rune.errors import RuneError
from rune.ivm.values import EntityRef
from rune.policies.decision import Decision
from rune.policies.refs import format_ref
from rune.streams.changefeed import CHECKPOINT_KEY

__all__ = ["consume"]

DEFAULT_IDLE_S: Final = 5.0


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
@kafka_options
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
    settings = client_settings(config, kafka, topic_overrides)
    options = client_options(settings, "consume")
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
        raise command_failure(exc) from None
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
        raise command_failure(exc) from None
    finally:
        close()
        click.echo(f"rune: {printed} record(s) from {what}", err=True)
