"""SpiceDB schema language → :class:`~rune.models.ir.Model`.

Supported: ``definition`` (prefixed names ``example/user``), ``relation`` with allowed subject
types ``user | group#member | user:*``, ``permission`` with ``+`` (union), ``&``
(intersection), ``-`` (exclusion), arrows ``->`` (and ``.any(rel)``, the same), parentheses,
``nil``; comments ``//``, ``/* */``. Precedence is SpiceDB's: ``+`` binds tighter than ``&``
and ``-``, which associate to the left (``a + b & c`` is ``(a + b) & c``).

Refused with :class:`~rune.models.errors.UnsupportedFeatureError`: caveats on subject types
(``user with is_weekday``), ``with expiration``, ``.all(rel)`` arrows; ``caveat`` and
``use`` statements themselves are skipped.
"""

from __future__ import annotations

import re
from typing import Final

from rune.models.errors import UnsupportedFeatureError
from rune.models.ir import (
    Arrow,
    Computed,
    Exclusion,
    Expr,
    Intersection,
    Model,
    Nil,
    Relation,
    SubjectType,
    This,
    TypeDef,
    Union,
)
from rune.models.tokens import Token, TokenCursor

__all__ = ["parse_schema"]

_TOKEN: Final = re.compile(
    r"(?P<ws>[ \t\r\n]+)|(?P<comment>//[^\n]*|/\*.*?\*/)"
    r"|(?P<name>[a-zA-Z_][a-zA-Z0-9_]*(?:/[a-zA-Z_][a-zA-Z0-9_]*)*)"
    r"|(?P<sym>->|[{}()|:#*=+&\-.;,<>!])|(?P<other>\S)",
    re.S,
)


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    line, start = 1, 0
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "other"
        if kind not in ("ws", "comment"):
            out.append(Token(kind, m.group(), line, m.start() - start + 1))
        chunk = m.group()
        nl = chunk.count("\n")
        if nl:
            line += nl
            start = m.start() + chunk.rindex("\n") + 1
    out.append(Token("eof", "", line, len(text) - start + 1))
    return out


class _Parser(TokenCursor):
    end = "the end of the schema"

    def __init__(self, text: str) -> None:
        super().__init__(text, _tokens(text))

    def schema(self) -> Model:
        types: dict[str, TypeDef] = {}
        while self.tok.kind != "eof":
            t = self.tok
            if t.text == "definition":
                self.i += 1
                name = self.take_new_name(types, lambda n: f"type {n!r}")
                types[name.text] = self.definition(name)
            elif t.text == "caveat":
                self.skip_caveat()
            elif t.text == "use":
                self.i += 1
                self.take(kind="name")
            elif t.text == "partial":
                raise UnsupportedFeatureError("partials are not supported", t.line, t.column)
            else:
                raise self.error("expected 'definition' or 'caveat'")
        return Model(types, "spicedb")

    def skip_caveat(self) -> None:
        self.i += 1
        self.take(kind="name")
        depth = 0
        while self.tok.kind != "eof":
            t = self.toks[self.i]
            self.i += 1
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
                if depth == 0:
                    return
        raise self.error("unterminated caveat")

    def definition(self, name: Token) -> TypeDef:
        td = TypeDef(name.text, line=name.line, column=name.column)
        self.take("{")
        while not self.accept("}"):
            t = self.tok
            if t.text in ("relation", "permission"):
                self.i += 1
                rname = self.take_new_name(td.relations, lambda n: f"{name.text}#{n}")
                start = self.tok
                if t.text == "relation":
                    self.take(":")
                    types = self.subject_types()
                    rel = Relation(rname.text, types, This(), line=rname.line, column=rname.column)
                else:
                    self.take("=")
                    expr = self.expr()
                    rel = Relation(rname.text, (), expr, True, line=rname.line, column=rname.column)
                rel.source = f"{t.text} {rname.text}" + self.span(start).replace(" :", ":", 1)
                td.relations[rname.text] = rel
                self.accept(";")
            else:
                raise self.error("expected 'relation', 'permission' or '}'")
        return td

    def span(self, start: Token) -> str:
        return self._slice(start, self.toks[self.i - 1])

    def _slice(self, start: Token, end: Token) -> str:
        lines = self.text.splitlines()
        if start.line == end.line:
            piece = lines[start.line - 1][start.column - 1 : end.column - 1 + len(end.text)]
        else:
            parts = [lines[start.line - 1][start.column - 1 :]]
            parts += lines[start.line : end.line - 1]
            parts.append(lines[end.line - 1][: end.column - 1 + len(end.text)])
            piece = " ".join(p.strip() for p in parts)
        piece = re.sub(r"//.*|/\*.*?\*/", "", piece)
        return " " + re.sub(r"\s+", " ", piece).strip()

    def subject_types(self) -> tuple[SubjectType, ...]:
        out = [self.subject_type()]
        while self.accept("|"):
            out.append(self.subject_type())
        return tuple(out)

    def subject_type(self) -> SubjectType:
        name = self.take(kind="name")
        st = SubjectType(name.text)
        if self.accept(":"):
            self.take("*")
            st = SubjectType(name.text, wildcard=True)
        elif self.accept("#"):
            st = SubjectType(name.text, self.take(kind="name").text)
        if self.tok.text == "with":
            w = self.tok
            self.i += 1
            what = self.take(kind="name")
            feature = "expiration" if what.text == "expiration" else f"caveat {what.text!r}"
            while self.accept("and"):
                self.take(kind="name")
            raise UnsupportedFeatureError(
                f"{feature} on subject type {st} is not supported", w.line, w.column
            )
        return st

    def expr(self) -> Expr:
        left = self.union()
        while self.tok.text in ("&", "-") and self.tok.kind == "sym":
            op = self.take().text
            right = self.union()
            if op == "&":
                kids = (*left.children, right) if isinstance(left, Intersection) else (left, right)
                left = Intersection(kids)
            else:
                left = Exclusion(left, right)
        return left

    def union(self) -> Expr:
        kids = [self.arrow()]
        while self.tok.text == "+" and self.tok.kind == "sym":
            self.i += 1
            kids.append(self.arrow())
        return kids[0] if len(kids) == 1 else Union(tuple(kids))

    def arrow(self) -> Expr:
        t = self.tok
        if self.accept("("):
            e = self.expr()
            self.take(")")
            return e
        name = self.take(kind="name")
        if name.text == "nil":
            return Nil()
        if self.accept("->"):
            target = self.take(kind="name")
            if self.tok.text == "->":
                raise self.error("an arrow's target is a relation or permission name")
            return Arrow(name.text, target.text, t.line, t.column)
        if self.tok.text == "." and self.tok.kind == "sym":
            self.i += 1
            fn = self.take(kind="name")
            if fn.text == "all":
                raise UnsupportedFeatureError(".all() arrows are not supported", fn.line, fn.column)
            if fn.text != "any":
                raise self.error("expected 'any' or 'all'", fn)
            self.take("(")
            target = self.take(kind="name")
            self.take(")")
            return Arrow(name.text, target.text, t.line, t.column)
        return Computed(name.text, t.line, t.column)


def parse_schema(text: str) -> Model:
    """Parse a SpiceDB schema (raise :class:`~rune.models.errors.ModelError` with
    line:column). The model is checked by :func:`rune.models.compile.compile_model`."""
    return _Parser(text).schema()
