"""Errors of the Datalog engine: every one is a :class:`DatalogError`.

Errors about program text carry ``line`` and ``column`` (1-based) and the offending text, and
render as ``line:column: message``.
"""

from __future__ import annotations

from rune.errors import RuneError

__all__ = [
    "ArityError",
    "DatalogError",
    "DatalogSyntaxError",
    "InvalidValueError",
    "IterationLimitError",
    "SafetyError",
    "StratificationError",
    "UnknownRelationError",
]


class DatalogError(RuneError):
    """Root of the engine's errors. ``line``/``column`` are 0 when no place applies."""

    def __init__(self, message: str, line: int = 0, column: int = 0, text: str = "") -> None:
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        where = f"{line}:{column}: " if line else ""
        super().__init__(f"{where}{message}")


class DatalogSyntaxError(DatalogError):
    """The program text does not parse."""


class SafetyError(DatalogError):
    """A variable of a head, negated atom or comparison is not bound by a positive atom."""


class StratificationError(DatalogError):
    """Negation (or an on-demand declaration) inside a recursive cycle."""


class ArityError(DatalogError):
    """A relation is used with two different numbers of arguments."""


class UnknownRelationError(DatalogError):
    """A query names a relation that neither the program nor any update mentions."""


class InvalidValueError(DatalogError):
    """A value is not a string, integer, boolean or entity reference, or is out of bounds."""


class IterationLimitError(DatalogError):
    """A recursive stratum needs more semi-naive rounds than ``max_iterations`` allows.

    Raised by bulk materialization only (``Engine(...)`` and ``Engine.replace``), never by an
    update. ``relations`` are the (user-visible) relations of the stratum, ``limit`` the bound.
    """

    def __init__(self, relations: tuple[str, ...], limit: int) -> None:
        self.relations = relations
        self.limit = limit
        names = ", ".join(relations)
        super().__init__(
            f"recursive stratum {{{names}}} still derives new tuples after {limit} semi-naive "
            f"round(s) (max_iterations={limit})"
        )
