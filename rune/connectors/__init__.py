"""Logs RUNE reads and writes: one interface (:class:`Log`, :class:`Reader`) and its
implementations: Kafka (aiokafka), an embedded in-process log, and JSONL files."""

from rune.connectors.base import (
    ConnectorError,
    Log,
    Outgoing,
    Position,
    Reader,
    Record,
    TopicSpec,
)
from rune.connectors.embedded import EmbeddedLog, Retention
from rune.connectors.files import FileLog

__all__ = [
    "ConnectorError",
    "EmbeddedLog",
    "FileLog",
    "Log",
    "Outgoing",
    "Position",
    "Reader",
    "Record",
    "Retention",
    "TopicSpec",
]
