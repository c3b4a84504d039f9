"""OpenFGA models → :class:`~rune.models.ir.Model`: the DSL (schema 1.1) and the JSON form.

DSL: ``model`` / ``schema 1.1``, ``type``, ``relations``, ``define name: ...`` with direct
types ``[user, group#member, user:*]``, ``or``, ``and``, ``but not``, ``rel from tupleset``,
parentheses; comments start with ``#`` at the start of a line or after a space. A chain of one
operator may end with ``but not``: ``[user] or editor but not blocked`` is
``([user] or editor) but not blocked``.

JSON: ``{"schema_version": "1.1", "type_definitions": [{"type", "relations", "metadata"}]}``
with the rewrites ``this``, ``computedUserset``, ``tupleToUserset``, ``union``,
``intersection``, ``difference``.

Refused with :class:`~rune.models.errors.UnsupportedFeatureError`: conditions (``with cond``,
``condition`` blocks), modules (``module``, ``extend type``), schema versions other than 1.1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from rune.models.errors import (
    ModelSyntaxError,
    ModelValidationError,
    UnsupportedFeatureError,
)
from rune.models.ir import (
    Arrow,
    Computed,
    Exclusion,
    Expr,
    Intersection,
    Model,
    Relation,
    SubjectType,
    This,
    TypeDef,
    Union,
)
from rune.models.tokens import Token, TokenCursor

__all__ = ["parse_dsl", "parse_json", "parse_model"]

_TOKEN: Final = re.compile(r"(?P<ws>[ \t\r\n]+)|(?P<sym>[\[\](),:#*])|(?P<name>[^\s\[\](),:#*]+)")
_COMMENT: Final = re.compile(r"(^|[ \t])#[^\n]*", re.M)


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = _COMMENT.sub(lambda m: m.group(1) + " " * (len(m.group()) - len(m.group(1))), raw)
        for m in _TOKEN.finditer(line):
            if m.lastgroup != "ws":
                out.append(Token(m.lastgroup or "name", m.group(), n, m.start() + 1))
    last = text.count("\n") + 1
    out.append(Token("eof", "", last, 1))
    return out


class _Dsl(TokenCursor):
    end = "the end of the model"

    def __init__(self, text: str) -> None:
        super().__init__(text, _tokens(text))

    def model(self) -> Model:
        t = self.tok
        if t.text == "module":
            raise UnsupportedFeatureError("modules are not supported", t.line, t.column)
        self.take("model")
        self.take("schema")
        version = self.take(kind="name")
        if version.text != "1.1":
            raise UnsupportedFeatureError(
                f"schema {version.text} is not supported (only 1.1)", version.line, version.column
            )
        types: dict[str, TypeDef] = {}
        while self.tok.kind != "eof":
            t = self.tok
            if t.text == "type":
                self.i += 1
                name = self.take_new_name(types, lambda n: f"type {n!r}")
                types[name.text] = self.type_def(name)
            elif t.text == "condition":
                raise UnsupportedFeatureError("conditions are not supported", t.line, t.column)
            elif t.text == "extend":
                raise UnsupportedFeatureError("modules are not supported", t.line, t.column)
            else:
                raise self.error("expected 'type'")
        return Model(types, "openfga")

    def type_def(self, name: Token) -> TypeDef:
        td = TypeDef(name.text, line=name.line, column=name.column)
        if not self.accept("relations"):
            return td
        while self.tok.text == "define":
            self.i += 1
            rname = self.take_new_name(td.relations, lambda n: f"{name.text}#{n}")
            self.take(":")
            start = self.i
            types: list[SubjectType] = []
            expr = self.expr(types)
            source = self.text.splitlines()[rname.line - 1].strip()
            if self.toks[start].line != self.toks[self.i - 1].line:
                source = f"define {rname.text}: ..."
            td.relations[rname.text] = Relation(
                rname.text, tuple(types), expr, False, source, rname.line, rname.column
            )
        return td

    def expr(self, types: list[SubjectType]) -> Expr:
        first = self.term(types)
        op = self.tok.text if self.tok.text in ("or", "and") else None
        kids = [first]
        while op is not None and self.accept(op):
            kids.append(self.term(types))
            if self.tok.text in ("or", "and") and self.tok.text != op:
                raise self.error("mixing 'or' and 'and' needs parentheses")
        left: Expr = first
        if op == "or":
            left = Union(tuple(kids))
        elif op == "and":
            left = Intersection(tuple(kids))
        if self.tok.text == "but":
            self.i += 1
            self.take("not")
            left = Exclusion(left, self.term(types))
            if self.tok.text in ("or", "and", "but"):
                raise self.error("an operator after 'but not' needs parentheses")
        return left

    def term(self, types: list[SubjectType]) -> Expr:
        t = self.tok
        if self.accept("("):
            e = self.expr(types)
            self.take(")")
            return e
        if self.accept("["):
            if types:
                raise ModelSyntaxError("direct types are given once per relation", t.line, t.column)
            types.append(self.direct())
            while self.accept(","):
                types.append(self.direct())
            self.take("]")
            return This()
        name = self.take(kind="name")
        if name.text in ("or", "and", "but", "from", "define", "type"):
            raise self.error("expected a relation name", name)
        if self.accept("from"):
            ts = self.take(kind="name")
            return Arrow(ts.text, name.text, name.line, name.column)
        return Computed(name.text, name.line, name.column)

    def direct(self) -> SubjectType:
        name = self.take(kind="name")
        st = SubjectType(name.text)
        if self.accept(":"):
            self.take("*")
            st = SubjectType(name.text, wildcard=True)
        elif self.accept("#"):
            st = SubjectType(name.text, self.take(kind="name").text)
        if self.tok.text == "with":
            w = self.tok
            raise UnsupportedFeatureError(
                f"conditions ({st} with ...) are not supported", w.line, w.column
            )
        return st


def parse_dsl(text: str) -> Model:
    """Parse an OpenFGA DSL model (schema 1.1); raise ModelError with line:column."""
    return _Dsl(text).model()


def _rewrite(obj: Any, where: str, types: list[SubjectType]) -> Expr:
    if not isinstance(obj, Mapping) or len(obj) != 1:
        raise ModelSyntaxError(f"{where}: a userset rewrite is an object with one key")
    ((kind, body),) = obj.items()
    if kind == "this":
        return This()
    if kind == "computedUserset":
        return Computed(str(body.get("relation", "")))
    if kind == "tupleToUserset":
        ts = body.get("tupleset", {}).get("relation", "")
        cu = body.get("computedUserset", {}).get("relation", "")
        return Arrow(str(ts), str(cu))
    if kind in ("union", "intersection"):
        kids = tuple(
            _rewrite(c, f"{where}.{kind}.child[{i}]", types)
            for i, c in enumerate(body.get("child", []))
        )
        return Union(kids) if kind == "union" else Intersection(kids)
    if kind == "difference":
        return Exclusion(
            _rewrite(body.get("base"), f"{where}.difference.base", types),
            _rewrite(body.get("subtract"), f"{where}.difference.subtract", types),
        )
    raise ModelSyntaxError(f"{where}: unknown userset rewrite {kind!r}")


def parse_json(obj: Mapping[str, Any]) -> Model:
    """Parse OpenFGA's JSON authorization model (``type_definitions``...)."""
    version = obj.get("schema_version", "1.1")
    if version != "1.1":
        raise UnsupportedFeatureError(f"schema {version} is not supported (only 1.1)")
    if obj.get("conditions"):
        raise UnsupportedFeatureError("conditions are not supported")
    types: dict[str, TypeDef] = {}
    for i, td in enumerate(obj.get("type_definitions") or []):
        name = str(td.get("type", ""))
        if name in types:
            raise ModelValidationError(f"type {name!r} is defined twice")
        meta = ((td.get("metadata") or {}).get("relations")) or {}
        out = TypeDef(name)
        for rname, rw in (td.get("relations") or {}).items():
            direct = []
            for d in (meta.get(rname) or {}).get("directly_related_user_types") or []:
                if d.get("condition"):
                    raise UnsupportedFeatureError(
                        f"conditions ({name}#{rname}: {d['condition']}) are not supported"
                    )
                if "wildcard" in d:
                    direct.append(SubjectType(d["type"], wildcard=True))
                else:
                    direct.append(SubjectType(d["type"], d.get("relation") or None))
            expr = _rewrite(rw, f"type_definitions[{i}].relations.{rname}", direct)
            out.relations[rname] = Relation(rname, tuple(direct), expr, source=f"define {rname}")
        types[name] = out
    return Model(types, "openfga")


def parse_model(source: str | Mapping[str, Any]) -> Model:
    """The DSL when ``source`` is text (JSON text is recognised by its leading ``{``), the
    JSON form when it is a mapping."""
    if isinstance(source, Mapping):
        return parse_json(source)
    if source.lstrip().startswith("{"):
        import orjson

        try:
            parsed = orjson.loads(source)
        except orjson.JSONDecodeError as exc:
            raise ModelSyntaxError(f"invalid JSON model: {exc}") from None
        return parse_json(parsed)
    return parse_dsl(source)
