"""Errors of the Zanzibar model compilers and of relationship parsing.

Every error is a :class:`ModelError` (a :class:`rune.errors.RuneError`). Errors about model
text carry ``line`` and ``column`` (1-based; 0 when no place applies) and render as
``line:column: message``.
"""

from __future__ import annotations

from rune.errors import RuneError

__all__ = [
    "ModelError",
    "ModelSyntaxError",
    "ModelValidationError",
    "RelationshipError",
    "UnsupportedFeatureError",
]


class ModelError(RuneError):
    """Root of the errors of :mod:`rune.models`."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(f"{line}:{column}: {message}" if line else message)


class ModelSyntaxError(ModelError):
    """A SpiceDB schema or an OpenFGA model does not parse."""


class ModelValidationError(ModelError):
    """A model parses but is invalid: an unknown type or relation, a duplicate name, an arrow
    over a relation that does not exist, a recursion through an exclusion..."""


class UnsupportedFeatureError(ModelError):
    """A valid model uses a feature RUNE does not compile (caveats, conditions, expiration,
    modules): refused rather than silently ignored."""


class RelationshipError(ModelError):
    """A relationship (``document:1#viewer@user:anne``), tuple or subject is malformed, or
    does not fit the model."""
