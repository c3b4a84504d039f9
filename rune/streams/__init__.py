"""The streaming service: settings, ingest, serve, policy, consistency, changefeed, dead
letters, wired by :class:`Service` (``rune run``; docs/streaming.md)."""

from rune.streams.app import Service, topic_specs
from rune.streams.errors import DecodeError, StartupError, StreamsError
from rune.streams.keys import event_key, tombstone_event
from rune.streams.settings import Settings, Topics, load_settings

__all__ = [
    "DecodeError",
    "Service",
    "Settings",
    "StartupError",
    "StreamsError",
    "Topics",
    "event_key",
    "load_settings",
    "tombstone_event",
    "topic_specs",
]
