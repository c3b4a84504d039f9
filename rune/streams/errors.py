"""Errors of the streaming service (all derive from :class:`rune.errors.RuneError`)."""

from __future__ import annotations

from rune.errors import RuneError

__all__ = ["DecodeError", "StartupError", "StreamsError"]


class StreamsError(RuneError):
    """Root of the streaming service's errors."""


class DecodeError(StreamsError):
    """A record could not be decoded (not JSON, wrong shape, bad key)."""


class StartupError(StreamsError):
    """The service cannot start (for instance: no valid policy bundle in embedded mode)."""
