"""A model made ready for compiling: names, checks, helper relations, wildcard analysis.

:class:`Prepared` (``Prepared(model)``) gives every relation and permission its Datalog name
(refusing two that would share one), checks the references of every expression (subject types,
relations, arrows; :class:`~rune.models.errors.ModelValidationError` with line:column), gives
every compound subtrahend of an exclusion a helper relation (so that an exclusion always
negates one relation), and computes, to a fixed point, which relations may hold which
wildcards and which are *exact* (see :mod:`rune.models.compile` for what that means).
"""

from __future__ import annotations

from dataclasses import dataclass

from rune.models.errors import ModelValidationError
from rune.models.ir import (
    Arrow,
    Computed,
    Exclusion,
    Expr,
    Intersection,
    Model,
    Relation,
    This,
    Union,
)
from rune.models.names import datalog_name

__all__ = ["Prepared", "RelationToCompile"]


@dataclass(slots=True)
class RelationToCompile:
    """A relation to compile: a model relation, or a helper for a compound subtrahend."""

    type: str
    name: str
    dl: str
    expr: Expr
    owner: Relation
    """Whose relationships ``This`` reads."""
    comment: str


class Prepared:
    """A checked model with its relations to compile, their names and wildcard modes."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.rels: dict[str, RelationToCompile] = {}
        """Datalog name -> relation, helpers before the relation they serve."""
        self.names: dict[tuple[str, str], str] = {}
        """``(type, relation)`` -> Datalog name, helper relations included."""
        self.wild: dict[str, frozenset[str]] = {}
        """Datalog name -> the subject types whose wildcard it may hold."""
        self.exact: set[str] = set()
        """Datalog names with exact (expanded) wildcard semantics."""
        self._prepare()
        self._analyse()

    # -- names, checks and helpers ------------------------------------------------------

    def _prepare(self) -> None:
        taken: dict[str, str] = {}
        for t in self.model.types.values():
            for r in t.relations.values():
                dl = datalog_name(t.name, r.name)
                if dl in taken:
                    raise ModelValidationError(
                        f"{t.name}#{r.name} and {taken[dl]} have the same Datalog name {dl!r}",
                        r.line,
                        r.column,
                    )
                taken[dl] = f"{t.name}#{r.name}"
                self.names[(t.name, r.name)] = dl
        for t in self.model.types.values():
            for r in t.relations.values():
                self._validate(t.name, r)
        for t in self.model.types.values():
            for r in t.relations.values():
                dl = self.names[(t.name, r.name)]
                expr = self._hoist(t.name, r, r.expr, dl, [0], taken)
                comment = r.source or f"{t.name}#{r.name}"
                self.rels[dl] = RelationToCompile(t.name, r.name, dl, expr, r, comment)

    def _hoist(
        self, tname: str, owner: Relation, e: Expr, dl: str, k: list[int], taken: dict[str, str]
    ) -> Expr:
        """Give every compound subtrahend of an exclusion a helper relation."""
        if isinstance(e, Union | Intersection):
            kids = tuple(self._hoist(tname, owner, c, dl, k, taken) for c in e.children)
            return Union(kids) if isinstance(e, Union) else Intersection(kids)
        if isinstance(e, Exclusion):
            base = self._hoist(tname, owner, e.base, dl, k, taken)
            sub = self._hoist(tname, owner, e.subtract, dl, k, taken)
            if not isinstance(sub, Computed):
                k[0] += 1
                name = f"{owner.name}__{k[0]}"
                hdl = f"{dl}__{k[0]}"
                if hdl in taken:
                    raise ModelValidationError(
                        f"helper relation {hdl!r} collides with {taken[hdl]}"
                    )
                taken[hdl] = f"{tname}#{name}"
                self.names[(tname, name)] = hdl
                self.rels[hdl] = RelationToCompile(
                    tname, name, hdl, sub, owner, f"helper: the subtrahend of {tname}#{owner.name}"
                )
                sub = Computed(name)
            return Exclusion(base, sub)
        return e

    def _validate(self, tname: str, r: Relation) -> None:
        model = self.model
        for st in r.types:
            target = model.types.get(st.type)
            if target is None:
                raise ModelValidationError(
                    f"{tname}#{r.name}: unknown subject type {st.type!r}", r.line, r.column
                )
            if st.relation and st.relation not in target.relations:
                raise ModelValidationError(
                    f"{tname}#{r.name}: {st.type!r} has no relation {st.relation!r}",
                    r.line,
                    r.column,
                )

        def walk(e: Expr) -> None:
            if isinstance(e, Computed):
                if model.relation(tname, e.relation) is None:
                    raise ModelValidationError(
                        f"{tname}#{r.name}: {tname!r} has no relation or permission {e.relation!r}",
                        e.line or r.line,
                        e.column or r.column,
                    )
            elif isinstance(e, Arrow):
                ts = model.relation(tname, e.tupleset)
                if ts is None:
                    raise ModelValidationError(
                        f"{tname}#{r.name}: {tname!r} has no relation {e.tupleset!r}",
                        e.line or r.line,
                        e.column or r.column,
                    )
                if ts.permission or not isinstance(ts.expr, This):
                    raise ModelValidationError(
                        f"{tname}#{r.name}: the arrow's {e.tupleset!r} must be a relation "
                        "with direct subject types only",
                        e.line or r.line,
                        e.column or r.column,
                    )
                if not any(
                    model.relation(st.type, e.relation) is not None
                    for st in ts.types
                    if not st.wildcard
                ):
                    raise ModelValidationError(
                        f"{tname}#{r.name}: no subject type of {e.tupleset!r} has {e.relation!r}",
                        e.line or r.line,
                        e.column or r.column,
                    )
            elif isinstance(e, This):
                if r.permission or not r.types:
                    raise ModelValidationError(
                        f"{tname}#{r.name}: direct relationships need subject types",
                        r.line,
                        r.column,
                    )
            elif isinstance(e, Union | Intersection):
                for c in e.children:
                    walk(c)
            elif isinstance(e, Exclusion):
                walk(e.base)
                walk(e.subtract)

        walk(r.expr)

    # -- wildcards -----------------------------------------------------------------------

    def tupleset_targets(self, tname: str, e: Arrow) -> list[tuple[str, str | None, str]]:
        """``(subject type, subject relation, Datalog name of e.relation there)`` of each
        non-wildcard subject type of the arrow's tupleset that has ``e.relation``."""
        ts = self.model.relation(tname, e.tupleset)
        assert ts is not None
        out = []
        for st in ts.types:
            if not st.wildcard and (st.type, e.relation) in self.names:
                out.append((st.type, st.relation, self.names[(st.type, e.relation)]))
        return out

    def _wild_of(self, rel: RelationToCompile, e: Expr) -> frozenset[str]:
        if isinstance(e, This):
            out = {st.type for st in rel.owner.types if st.wildcard}
            for st in rel.owner.types:
                if st.relation:
                    out |= self.wild.get(self.names[(st.type, st.relation)], frozenset())
            return frozenset(out)
        if isinstance(e, Computed):
            return self.wild.get(self.names[(rel.type, e.relation)], frozenset())
        if isinstance(e, Arrow):
            acc: frozenset[str] = frozenset()
            for _, _, dl in self.tupleset_targets(rel.type, e):
                acc |= self.wild.get(dl, frozenset())
            return acc
        if isinstance(e, Union):
            acc = frozenset()
            for c in e.children:
                acc |= self._wild_of(rel, c)
            return acc
        if isinstance(e, Intersection):
            sets = [self._wild_of(rel, c) for c in e.children]
            return frozenset.intersection(*sets) if sets else frozenset()
        if isinstance(e, Exclusion):
            return self._wild_of(rel, e.base)
        return frozenset()

    def _exact_of(self, rel: RelationToCompile, e: Expr) -> bool:
        if isinstance(e, This):
            return any(
                self.names[(st.type, st.relation)] in self.exact
                for st in rel.owner.types
                if st.relation
            )
        if isinstance(e, Computed):
            return self.names[(rel.type, e.relation)] in self.exact
        if isinstance(e, Arrow):
            return any(dl in self.exact for _, _, dl in self.tupleset_targets(rel.type, e))
        if isinstance(e, Union | Intersection):
            return any(self._exact_of(rel, c) for c in e.children)
        if isinstance(e, Exclusion):
            return bool(self._wild_of(rel, e.base)) or self._exact_of(rel, e.base)
        return False

    def _analyse(self) -> None:
        changed = True
        while changed:
            changed = False
            for dl, rel in self.rels.items():
                w = self._wild_of(rel, rel.expr)
                if w != self.wild.get(dl, frozenset()):
                    self.wild[dl] = w
                    changed = True
        changed = True
        while changed:
            changed = False
            for dl, rel in self.rels.items():
                if dl not in self.exact and self._exact_of(rel, rel.expr):
                    self.exact.add(dl)
                    changed = True
