"""Errors of the client library (all derive from :class:`rune.errors.RuneError`)."""

from __future__ import annotations

from rune.errors import RuneError

__all__ = ["ClientError", "ClientTimeout", "DeliveryFailed"]


class ClientError(RuneError):
    """Root of the client's errors: a topic that does not exist, a Kafka error, bad input."""


class DeliveryFailed(ClientError):
    """The broker did not acknowledge a record (its error is in the message)."""


class ClientTimeout(ClientError):
    """What was waited for (acknowledgements, a decision, a complete changefeed) did not
    happen in time; nothing is undone (a record may still be delivered later)."""
