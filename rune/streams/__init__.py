"""The streaming service: ingest, serve, policy, consistency, changefeed, dead
letters, wired by :class:`Service` (``rune run``; docs/streaming.md)."""

from rune.streams.app import Service, topic_specs
from rune.streams.errors import DecodeError, StartupError, StreamsError
from rune.streams.keys import event_key, tombstone_event

__all__ = [
    "DecodeError",
    "Service",
    "StartupError",
    "StreamsError",
    "event_key",
    "tombstone_event",
    "topic_specs",
]
