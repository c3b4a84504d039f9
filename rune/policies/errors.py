"""Errors of the decision layer: every one is a :class:`PolicyError` with a ``location``.

``location`` names the place in the input that is wrong, in a path notation a user can follow:
``version``, ``cedar:policy2 (3:1)``, ``datalog 4:12``, ``events[3].entity.attrs.x``,
``fact[2]``, ``context.a.b``. It is ``""`` when no single place applies.
"""

from __future__ import annotations

from rune.errors import RuneError

__all__ = [
    "BundleError",
    "EventError",
    "NoBundleError",
    "PolicyError",
    "RequestError",
    "StaleBundleError",
]


class PolicyError(RuneError):
    """Root of the decision layer's errors."""

    def __init__(self, message: str, location: str = "") -> None:
        self.message = message
        self.location = location
        super().__init__(f"{location}: {message}" if location else message)

    def to_json(self) -> dict[str, str]:
        return {"error": type(self).__name__, "location": self.location, "message": self.message}


class BundleError(PolicyError):
    """A policy bundle is malformed: bad shape, Cedar parse or validation error, Datalog error."""


class StaleBundleError(BundleError):
    """A bundle's version is not higher than the active one; the active bundle stays."""


class NoBundleError(PolicyError):
    """An operation needs an active bundle and none has been loaded."""


class EventError(PolicyError):
    """A fact or entity event is malformed; nothing of its batch was applied."""


class RequestError(PolicyError):
    """An authorization request is malformed (reported as a ``deny`` with an ``error`` field)."""
