"""JSONL files as topics of the embedded log: inputs loaded line by line, outputs written out.

``FileLog`` is an :class:`EmbeddedLog` whose input topics are filled from files (one record
per non-blank line, value = the line's bytes, ``origin`` = ``name:line``; keys are derived by
the caller, see :func:`load_jsonl`) and whose output topics are mirrored to binary streams,
one value per line.

Input topics keep every record (:meth:`load_jsonl` lifts their retention bounds): they are
loaded before any reader opens, so nothing would protect unread records from retention.
Output topics keep the log's retention; their sinks get every value as it is produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from rune.connectors.base import Outgoing, Position
from rune.connectors.embedded import EmbeddedLog, Retention

__all__ = ["FileLog", "KeyFn"]

KeyFn = Callable[[bytes], bytes | None]


class FileLog(EmbeddedLog):
    def __init__(self, retention: Retention | None = None) -> None:
        super().__init__(retention)
        self._sinks: dict[str, IO[bytes]] = {}

    def load_jsonl(self, topic: str, stream: IO[bytes], name: str, key: KeyFn | None = None) -> int:
        """Append each non-blank line of ``stream`` to ``topic``; returns the count. The
        topic then keeps every record (compaction still applies to a compacted topic)."""
        self.set_retention(topic, self.defaults.unbounded())
        count = 0
        for number, line in enumerate(stream, start=1):
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue
            self.append(Outgoing(topic, key(value) if key else None, value), f"{name}:{number}")
            count += 1
        return count

    def load_file(self, topic: str, path: Path, key: KeyFn | None = None) -> int:
        with path.open("rb") as stream:
            return self.load_jsonl(topic, stream, path.name, key)

    def sink(self, topic: str, stream: IO[bytes]) -> None:
        """Write the value of every record later produced to ``topic`` to ``stream``."""
        self._sinks[topic] = stream

    async def produce(self, records: Sequence[Outgoing]) -> list[Position]:
        positions = await super().produce(records)
        for out in records:
            stream = self._sinks.get(out.topic)
            if stream is not None and out.value is not None:
                stream.write(out.value + b"\n")
        for stream in {id(s): s for s in self._sinks.values()}.values():
            stream.flush()
        return positions
