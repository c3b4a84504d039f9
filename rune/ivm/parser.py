"""Tokenizer and recursive-descent parser for Datalog dialect v1.

``parse(source)`` returns a :class:`~rune.ivm.syntax.Program` or raises
:class:`~rune.ivm.errors.DatalogSyntaxError` with the line and column of the offending token.
Values in the text pass the same checks as values given to ``Engine.update``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from itertools import count

from rune.ivm.errors import DatalogSyntaxError, InvalidValueError
from rune.ivm.syntax import (
    COMPARISON_OPERATORS,
    Atom,
    Comparison,
    Const,
    Literal,
    Negation,
    OnDemand,
    Program,
    Rule,
    Term,
    Var,
)
from rune.ivm.values import EntityRef, Value, check_value

__all__ = ["MAX_SOURCE_CHARS", "parse"]

MAX_SOURCE_CHARS = 10_000_000
"""Longest program text accepted."""

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*|/\*(?:.|\n)*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<int>-?[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>:-|::|!=|<=|>=|[(),.!=<>])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "string" | "int" | "ident" | "punct" | "eof"
    text: str
    line: int
    column: int


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    n = len(source)
    while pos < n:
        m = _TOKEN.match(source, pos)
        column = pos - line_start + 1
        if m is None:
            ch = source[pos]
            if ch == '"':
                raise DatalogSyntaxError("unterminated string", line, column, ch)
            if source.startswith("/*", pos):
                raise DatalogSyntaxError("unterminated block comment", line, column, "/*")
            raise DatalogSyntaxError(f"unexpected character {ch!r}", line, column, ch)
        kind = m.lastgroup
        text = m.group()
        assert kind is not None
        if kind not in ("ws", "comment"):
            tokens.append(Token(kind, text, line, column))
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = pos + text.rindex("\n") + 1
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0
        self._anonymous = count(1)

    # -- token helpers -------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def at(self, text: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == "punct" and tok.text == text

    def expect(self, text: str, what: str) -> Token:
        tok = self.peek()
        if tok.kind == "punct" and tok.text == text:
            return self.next()
        raise self.error(f"expected {what}", tok)

    @staticmethod
    def error(message: str, tok: Token) -> DatalogSyntaxError:
        found = "end of input" if tok.kind == "eof" else repr(tok.text)
        return DatalogSyntaxError(f"{message}, found {found}", tok.line, tok.column, tok.text)

    # -- grammar -------------------------------------------------------------------------
    def program(self) -> Program:
        rules: list[Rule] = []
        on_demand: list[OnDemand] = []
        while self.peek().kind != "eof":
            if self.at("."):
                on_demand.extend(self.directive())
            else:
                rules.append(self.rule())
        return Program(tuple(rules), tuple(on_demand))

    def directive(self) -> list[OnDemand]:
        self.next()  # "."
        name = self.peek()
        if name.kind != "ident" or name.text != "on_demand":
            raise self.error("expected a directive name (on_demand)", name)
        self.next()
        out: list[OnDemand] = []
        while True:
            tok = self.peek()
            if tok.kind != "ident" or not _is_relation_name(tok.text):
                raise self.error("expected a relation name", tok)
            self.next()
            out.append(OnDemand(tok.text, tok.line, tok.column))
            if self.at(","):
                self.next()
                continue
            self.expect(".", "'.' after the directive")
            return out

    def rule(self) -> Rule:
        start = self.peek()
        head = self.atom()
        body: list[Literal] = []
        if self.at(":-"):
            self.next()
            body.append(self.literal())
            while self.at(","):
                self.next()
                body.append(self.literal())
        self.expect(".", "',' or '.'" if body else "':-' or '.'")
        return Rule(head, tuple(body), start.line, start.column)

    def atom(self) -> Atom:
        tok = self.peek()
        if tok.kind != "ident":
            raise self.error("expected a relation name", tok)
        if not _is_relation_name(tok.text):
            raise self.error(
                "relation names start with a lower-case letter or '_' "
                "(upper-case names are variables)",
                tok,
            )
        self.next()
        args: list[Term] = []
        if self.at("("):
            self.next()
            if not self.at(")"):
                args.append(self.term())
                while self.at(","):
                    self.next()
                    args.append(self.term())
            self.expect(")", "',' or ')'")
        return Atom(tok.text, tuple(args), tok.line, tok.column)

    def literal(self) -> Literal:
        tok = self.peek()
        if self.at("!"):
            self.next()
            if self.peek().kind != "ident":
                raise self.error("expected an atom after '!'", self.peek())
            return Negation(self.atom(), tok.line, tok.column)
        if (
            tok.kind == "ident"
            and _is_relation_name(tok.text)
            and tok.text not in ("true", "false")
            and not self.at("::", 1)
        ):
            return self.atom()
        left = self.term()
        op = self.peek()
        if op.kind != "punct" or op.text not in COMPARISON_OPERATORS:
            raise self.error("expected a comparison operator (= != < <= > >=)", op)
        self.next()
        right = self.term()
        return Comparison(op.text, left, right, tok.line, tok.column)

    def term(self) -> Term:
        tok = self.peek()
        if tok.kind == "string":
            self.next()
            return Const(self.value(_decode_string(tok), tok))
        if tok.kind == "int":
            self.next()
            return Const(self.value(int(tok.text), tok))
        if tok.kind == "ident":
            if self.at("::", 1):
                return self.entity()
            self.next()
            if tok.text == "true":
                return Const(True)
            if tok.text == "false":
                return Const(False)
            if tok.text == "_":
                return Var(f"_#{next(self._anonymous)}")
            if tok.text[0].isupper() or tok.text[0] == "_":
                return Var(tok.text)
            raise DatalogSyntaxError(
                f"expected a term, found {tok.text!r} (variables start with an upper-case "
                "letter, strings are quoted)",
                tok.line,
                tok.column,
                tok.text,
            )
        raise self.error('expected a term (variable, string, integer, boolean or Type::"id")', tok)

    def entity(self) -> Term:
        first = self.peek()
        parts: list[str] = []
        while self.peek().kind == "ident" and self.at("::", 1):
            parts.append(self.next().text)
            self.next()  # "::"
        tok = self.peek()
        if tok.kind != "string":
            raise self.error('expected a quoted entity id after "::"', tok)
        self.next()
        return Const(self.value(EntityRef("::".join(parts), _decode_string(tok)), first))

    @staticmethod
    def value(value: Value, tok: Token) -> Value:
        try:
            return check_value(value)
        except InvalidValueError as exc:
            raise DatalogSyntaxError(exc.message, tok.line, tok.column, tok.text[:40]) from None


def _is_relation_name(text: str) -> bool:
    return text[0].islower() or (text[0] == "_" and len(text) > 1 and not text[1].isupper())


def _decode_string(tok: Token) -> str:
    try:
        value = json.loads(tok.text)
    except ValueError as exc:
        raise DatalogSyntaxError(
            f"invalid string literal: {exc.args[0] if exc.args else exc}",
            tok.line,
            tok.column,
            tok.text[:40],
        ) from None
    assert isinstance(value, str)
    return value


def parse(source: str) -> Program:
    """Parse Datalog dialect v1 text. Raises ``DatalogSyntaxError`` with line:column."""
    if not isinstance(source, str):
        raise DatalogSyntaxError(f"program source must be a str, not {type(source).__name__}")
    if len(source) > MAX_SOURCE_CHARS:
        raise DatalogSyntaxError(
            f"program of {len(source)} characters exceeds the limit of {MAX_SOURCE_CHARS}"
        )
    return _Parser(source).program()
