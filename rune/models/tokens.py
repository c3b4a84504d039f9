"""Tokens, and the cursor both model parsers (SpiceDB schemas, the OpenFGA DSL) read them with.

Each front end has its own tokenizer (their comments and symbols differ) producing
:class:`Token` lists ending with an ``eof`` token; :class:`TokenCursor` gives the recursive-
descent parsers ``tok``, ``take``, ``accept`` and errors at the token's line and column.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass

from rune.models.errors import ModelSyntaxError, ModelValidationError

__all__ = ["Token", "TokenCursor"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "name", "sym", "eof", or a tokenizer's own kinds
    text: str
    line: int
    column: int


class TokenCursor:
    """A position in a token list; ``end`` names the end of the input in error messages."""

    end = "the end of the input"

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text = text
        self.toks = tokens
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def error(self, message: str, tok: Token | None = None) -> ModelSyntaxError:
        t = tok or self.tok
        found = repr(t.text) if t.kind != "eof" else self.end
        return ModelSyntaxError(f"{message}, found {found}", t.line, t.column)

    def take(self, text: str | None = None, kind: str | None = None) -> Token:
        """The current token, which must have this text or kind; then the next one."""
        t = self.tok
        if (text is not None and t.text != text) or (kind is not None and t.kind != kind):
            raise self.error(f"expected {text!r}" if text else f"expected a {kind}")
        self.i += 1
        return t

    def accept(self, text: str) -> bool:
        """Skip the current token if it is the name or symbol ``text``."""
        if self.tok.text == text and self.tok.kind in ("sym", "name"):
            self.i += 1
            return True
        return False

    def take_new_name(self, defined: Container[str], describe: Callable[[str], str]) -> Token:
        """The current name token, which must not name something ``defined`` already
        (``describe(name)`` says what, for the error); then the next one."""
        name = self.take(kind="name")
        if name.text in defined:
            what = describe(name.text)
            raise ModelValidationError(f"{what} is defined twice", name.line, name.column)
        return name
