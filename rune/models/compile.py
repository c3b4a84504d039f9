"""Compile a Zanzibar model (:class:`~rune.models.ir.Model`) to a stratified Datalog program.

Relationships are facts of one base relation, the tuple as written::

    relationship(ObjectType, ObjectId, Relation, SubjectType, SubjectId, SubjectRelation)

(``document:1#viewer@group:eng#member`` is ``relationship("document", "1", "viewer",
"group", "eng", "member")``; a plain subject has ``""`` as its relation, a wildcard ``"*"`` as
its id). Every relation and permission ``T#r`` becomes the derived relation ``T__r(ObjectId,
SubjectType, SubjectId, SubjectRelation)``: the subjects of object ``T:ObjectId`` for ``r``,
usersets included. Union is several rules, intersection a join on the subject, exclusion a
negated atom, an arrow ``parent->view`` a join through the ``parent`` relationships, a subject
set ``group#member`` a join with ``group__member``. Recursion is Datalog recursion.

**Wildcards.** A wildcard ``user:*`` is stored as the subject ``("user", "*", "")``, which also
stands for every subject of its type that no relationship names (the *representative*). A
relation is *monotone* when a subject has it whenever the representative has it; then its rows
hold explicit subjects and the representative, and ``check`` asks for the subject or the
representative. An exclusion whose left side can hold a wildcard breaks that (``user:* but not
bob``): such a relation and everything computed from it is *exact*: the wildcard is expanded
over ``zanzibar_subject(Type, Id)`` (every plain subject of a relationship), so that a subject
some relationship names has its own exact row, and any other subject is answered by the
representative. Pitfall: an exact relation holding a wildcard costs one row per known subject of
its type.

**Usersets as subjects.** OpenFGA treats a userset ``folder:x#viewer`` as a subject of every
relation it implies (through ``viewer from parent``, say): OpenFGA models get the rule
``T__r(O, "T", O, "r") :- zanzibar_object("T", O)`` for each relation.

**Materialized or on demand.** Relations in a recursive component (group membership, folder
ancestry) and everything they read are materialized; the others (usually the permissions) are
``.on_demand``: evaluated through indexes at check or lookup time. ``materialize="all"``
materializes every relation (for the changefeed). The program also states its model as facts
``zanzibar_relation(Type, Relation, DatalogName, Mode)`` (``Mode``: ``monotone`` or ``exact``),
which :mod:`rune.models.check` reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from rune.models.errors import ModelValidationError
from rune.models.ir import (
    Arrow,
    Computed,
    Exclusion,
    Expr,
    Intersection,
    Model,
    Nil,
    Relation,
    This,
    Union,
)

__all__ = [
    "META",
    "RELATIONSHIP",
    "SUBJECT",
    "CompiledModel",
    "compile_model",
    "datalog_name",
]

RELATIONSHIP: Final = "relationship"
SUBJECT: Final = "zanzibar_subject"
OBJECT: Final = "zanzibar_object"
META: Final = "zanzibar_relation"
_SAFE: Final = re.compile(r"[A-Za-z0-9_]")


def _mangle(name: str) -> str:
    out = "".join(c if _SAFE.match(c) else ("_" if c == "/" else f"_{ord(c):x}_") for c in name)
    return out if re.match(r"[a-z]", out) else "t_" + out


def datalog_name(type_name: str, relation: str) -> str:
    """The Datalog relation of ``type_name#relation``: ``document__view``; ``/`` of a prefixed
    name becomes ``_``, other characters outside ``[A-Za-z0-9_]`` ``_<hex>_``."""
    return f"{_mangle(type_name)}__{_mangle(relation)}"


# -- terms and literals ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Var:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class _Const:
    value: str

    def __str__(self) -> str:
        import orjson

        return orjson.dumps(self.value).decode()


_Term = _Var | _Const
_Subj = tuple[_Term, _Term, _Term]


@dataclass(frozen=True, slots=True)
class _Atom:
    rel: str
    args: tuple[_Term, ...]
    neg: bool = False

    def __str__(self) -> str:
        return ("!" if self.neg else "") + f"{self.rel}({', '.join(map(str, self.args))})"


@dataclass(frozen=True, slots=True)
class _Cmp:
    left: _Term
    op: str
    right: _Term

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


_Lit = _Atom | _Cmp


def _subst_term(t: _Term, s: dict[str, _Term]) -> _Term:
    while isinstance(t, _Var) and t.name in s:
        t = s[t.name]
    return t


def _subst(lit: _Lit, s: dict[str, _Term]) -> _Lit:
    if isinstance(lit, _Atom):
        return _Atom(lit.rel, tuple(_subst_term(a, s) for a in lit.args), lit.neg)
    return _Cmp(_subst_term(lit.left, s), lit.op, _subst_term(lit.right, s))


def _unify(pairs: Iterable[tuple[_Term, _Term]]) -> dict[str, _Term] | None:
    s: dict[str, _Term] = {}
    for a, b in pairs:
        a, b = _subst_term(a, s), _subst_term(b, s)
        if a == b:
            continue
        if isinstance(a, _Var):
            s[a.name] = b
        elif isinstance(b, _Var):
            s[b.name] = a
        else:
            return None
    return s


@dataclass(frozen=True, slots=True)
class _Alt:
    """One way an expression holds: a rule body and the subject it yields (``subj``), or,
    for a *wild* alternative, that it holds for every plain subject of type ``wild``."""

    body: tuple[_Lit, ...]
    subj: _Subj | None = None
    wild: str | None = None


_T, _I, _R = _Var("T"), _Var("I"), _Var("R")
_EMPTY, _STAR = _Const(""), _Const("*")
_OBJ = _Var("O")


@dataclass(slots=True)
class _Rel:
    """A relation to compile: a model relation, or a helper for a compound subtrahend."""

    type: str
    name: str
    dl: str
    expr: Expr
    owner: Relation
    """Whose relationships ``This`` reads."""
    comment: str


@dataclass(frozen=True, slots=True)
class CompiledModel:
    """A compiled model: the Datalog text and what checks and lookups need to know."""

    model: Model
    datalog: str
    names: dict[tuple[str, str], str]
    """``(type, relation)`` -> Datalog relation."""
    exact: frozenset[str]
    """Datalog relations with exact (expanded) wildcard semantics."""
    wild: dict[str, frozenset[str]]
    """Datalog relation -> the subject types whose wildcard it may hold."""
    on_demand: frozenset[str]
    materialized: frozenset[str] = field(default_factory=frozenset)

    def relation(self, type_name: str, relation: str) -> str | None:
        return self.names.get((type_name, relation))

    def bundle(self, version: int = 1, datalog: str = "") -> dict[str, object]:
        """A policy bundle running this model (plus ``datalog`` of your own)."""
        return {"version": version, "datalog": self.datalog + ("\n" + datalog if datalog else "")}


class _Compiler:
    def __init__(
        self, model: Model, materialize: Literal["auto", "all"], userset_self: bool
    ) -> None:
        self.model = model
        self.userset_self = userset_self
        self.materialize = materialize
        self.rels: dict[str, _Rel] = {}
        self.names: dict[tuple[str, str], str] = {}
        self.wild: dict[str, frozenset[str]] = {}
        self.exact: set[str] = set()
        self.fresh = 0

    # -- checks and helpers ------------------------------------------------------------

    def prepare(self) -> None:
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
                self.validate(t.name, r)
        for t in self.model.types.values():
            for r in t.relations.values():
                dl = self.names[(t.name, r.name)]
                expr = self.hoist(t.name, r, r.expr, dl, [0], taken)
                comment = r.source or f"{t.name}#{r.name}"
                self.rels[dl] = _Rel(t.name, r.name, dl, expr, r, comment)

    def hoist(
        self, tname: str, owner: Relation, e: Expr, dl: str, k: list[int], taken: dict[str, str]
    ) -> Expr:
        """Give every compound subtrahend of an exclusion a helper relation."""
        if isinstance(e, Union | Intersection):
            kids = tuple(self.hoist(tname, owner, c, dl, k, taken) for c in e.children)
            return Union(kids) if isinstance(e, Union) else Intersection(kids)
        if isinstance(e, Exclusion):
            base = self.hoist(tname, owner, e.base, dl, k, taken)
            sub = self.hoist(tname, owner, e.subtract, dl, k, taken)
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
                self.rels[hdl] = _Rel(
                    tname, name, hdl, sub, owner, f"helper: the subtrahend of {tname}#{owner.name}"
                )
                sub = Computed(name)
            return Exclusion(base, sub)
        return e

    def validate(self, tname: str, r: Relation) -> None:
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

    # -- analysis ------------------------------------------------------------------------

    def tupleset_targets(self, tname: str, e: Arrow) -> list[tuple[str, str | None, str]]:
        ts = self.model.relation(tname, e.tupleset)
        assert ts is not None
        out = []
        for st in ts.types:
            if not st.wildcard and (st.type, e.relation) in self.names:
                out.append((st.type, st.relation, self.names[(st.type, e.relation)]))
        return out

    def wild_of(self, rel: _Rel, e: Expr) -> frozenset[str]:
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
                acc |= self.wild_of(rel, c)
            return acc
        if isinstance(e, Intersection):
            sets = [self.wild_of(rel, c) for c in e.children]
            return frozenset.intersection(*sets) if sets else frozenset()
        if isinstance(e, Exclusion):
            return self.wild_of(rel, e.base)
        return frozenset()

    def exact_of(self, rel: _Rel, e: Expr) -> bool:
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
            return any(self.exact_of(rel, c) for c in e.children)
        if isinstance(e, Exclusion):
            return bool(self.wild_of(rel, e.base)) or self.exact_of(rel, e.base)
        return False

    def analyse(self) -> None:
        changed = True
        while changed:
            changed = False
            for dl, rel in self.rels.items():
                w = self.wild_of(rel, rel.expr)
                if w != self.wild.get(dl, frozenset()):
                    self.wild[dl] = w
                    changed = True
        changed = True
        while changed:
            changed = False
            for dl, rel in self.rels.items():
                if dl not in self.exact and self.exact_of(rel, rel.expr):
                    self.exact.add(dl)
                    changed = True

    # -- alternatives --------------------------------------------------------------------

    def var(self, prefix: str) -> _Var:
        self.fresh += 1
        return _Var(f"{prefix}{self.fresh}")

    def access(self, dl: str, obj: _Term, exact: bool) -> list[_Alt]:
        alts = [_Alt((_Atom(dl, (obj, _T, _I, _R)),), (_T, _I, _R))]
        if dl in self.exact:
            return alts
        for w in sorted(self.wild.get(dl, ())):
            atom = _Atom(dl, (obj, _Const(w), _STAR, _EMPTY))
            if exact:
                alts.append(_Alt((atom, _Atom(SUBJECT, (_Const(w), _I))), (_Const(w), _I, _EMPTY)))
            else:
                alts.append(_Alt((atom,), wild=w))
        return alts

    def direct_alts(self, rel: _Rel, obj: _Term, exact: bool) -> list[_Alt]:
        """The alternatives of a relation's directly related subjects (``[user, group#member,
        user:*]``)."""
        tname = rel.type
        out: list[_Alt] = []
        owner = rel.owner
        for st in owner.types:
            u = _Const(st.type)
            base = (_Const(tname), obj, _Const(owner.name), u)
            if st.wildcard:
                tup = _Atom(RELATIONSHIP, (*base, _STAR, _EMPTY))
                if exact:
                    out.append(_Alt((tup, _Atom(SUBJECT, (u, _I))), (u, _I, _EMPTY)))
                else:
                    out.append(_Alt((tup,), (u, _STAR, _EMPTY)))
                    out.append(_Alt((tup,), wild=st.type))
            elif st.relation is None:
                tup = _Atom(RELATIONSHIP, (*base, _I, _EMPTY))
                out.append(_Alt((tup, _Cmp(_I, "!=", _STAR)), (u, _I, _EMPTY)))
            else:
                g = self.var("G")
                tup = _Atom(RELATIONSHIP, (*base, g, _Const(st.relation)))
                out.append(_Alt((tup,), (u, g, _Const(st.relation))))
                for a in self.access(self.names[(st.type, st.relation)], g, exact):
                    out.append(_Alt((tup, *a.body), a.subj, a.wild))
        return out

    def arrow_alts(self, tname: str, e: Arrow, obj: _Term, exact: bool) -> list[_Alt]:
        """The alternatives of ``tupleset->relation``: through each target of the tupleset."""
        out: list[_Alt] = []
        for utype, urel, dl in self.tupleset_targets(tname, e):
            f = self.var("F")
            tup = _Atom(
                RELATIONSHIP,
                (_Const(tname), obj, _Const(e.tupleset), _Const(utype), f, _Const(urel or "")),
            )
            for a in self.access(dl, f, exact):
                out.append(_Alt((tup, *a.body), a.subj, a.wild))
        return out

    def alts(self, rel: _Rel, e: Expr, obj: _Term, exact: bool) -> list[_Alt]:
        tname = rel.type
        if isinstance(e, Nil):
            return []
        if isinstance(e, This):
            return self.direct_alts(rel, obj, exact)
        if isinstance(e, Computed):
            return self.access(self.names[(tname, e.relation)], obj, exact)
        if isinstance(e, Arrow):
            return self.arrow_alts(tname, e, obj, exact)
        if isinstance(e, Union):
            return [a for c in e.children for a in self.alts(rel, c, obj, exact)]
        if isinstance(e, Intersection):
            combos: list[list[_Alt]] = [[]]
            for c in e.children:
                options = self.alts(rel, c, obj, exact)
                combos = [[*combo, a] for combo in combos for a in options]
            out = []
            for combo in combos:
                alt = self.meet(combo)
                if alt is not None:
                    out.append(alt)
            return out
        if isinstance(e, Exclusion):
            assert isinstance(e.subtract, Computed)
            sub = self.names[(tname, e.subtract.relation)]
            out = []
            for a in self.alts(rel, e.base, obj, exact):
                if a.subj is None:
                    continue  # a wild base only occurs in exact relations, expanded there
                t, i, r = a.subj
                negs: list[_Lit] = [_Atom(sub, (obj, t, i, r), neg=True)]
                if sub not in self.exact and self.wild.get(sub) and i != _STAR:
                    negs.append(_Atom(sub, (obj, t, _STAR, r), neg=True))
                out.append(_Alt((*a.body, *negs), a.subj))
            return out
        raise AssertionError(e)

    def meet(self, combo: list[_Alt]) -> _Alt | None:
        wilds = {a.wild for a in combo if a.wild is not None}
        if len(wilds) > 1:
            return None
        explicit = [a for a in combo if a.subj is not None]
        body = [lit for a in combo for lit in a.body]
        if not explicit:
            return _Alt(tuple(body), wild=wilds.pop())
        pairs: list[tuple[_Term, _Term]] = []
        first = explicit[0].subj
        assert first is not None
        for a in explicit[1:]:
            assert a.subj is not None
            pairs += list(zip(first, a.subj, strict=True))
        if wilds:
            w = next(iter(wilds))
            pairs += [(first[0], _Const(w)), (first[2], _EMPTY)]
        s = _unify(pairs)
        if s is None:
            return None
        subj = (_subst_term(first[0], s), _subst_term(first[1], s), _subst_term(first[2], s))
        lits: list[_Lit] = []
        for lit in body:
            lit = _subst(lit, s)
            if lit not in lits:
                lits.append(lit)
        return _Alt(tuple(lits), subj)

    # -- output --------------------------------------------------------------------------

    def rules(self, rel: _Rel) -> list[str]:
        self.fresh = 0
        exact = rel.dl in self.exact
        out = []
        if self.userset_self and self.model.relation(rel.type, rel.name) is not None:
            t, r = _Const(rel.type), _Const(rel.name)
            out.append(f"{rel.dl}({_OBJ}, {t}, {_OBJ}, {r}) :- {OBJECT}({t}, {_OBJ}).")
        for a in self.alts(rel, rel.expr, _OBJ, exact):
            if a.subj is None:
                continue
            body = ", ".join(map(str, _order(a.body)))
            out.append(f"{rel.dl}({_OBJ}, {', '.join(map(str, a.subj))}) :- {body}.")
        return out

    def run(self) -> CompiledModel:
        self.prepare()
        self.analyse()
        bodies = {dl: self.rules(rel) for dl, rel in self.rels.items()}
        deps = {
            dl: {
                m
                for rule in b
                for m in re.findall(r"([a-z_][A-Za-z0-9_]*)\(", rule.split(":-", 1)[1])
                if m in self.rels
            }
            for dl, b in bodies.items()
        }
        recursive = _recursive(deps)
        materialized = set(recursive)
        stack = list(recursive)
        while stack:
            for d in deps[stack.pop()]:
                if d not in materialized:
                    materialized.add(d)
                    stack.append(d)
        if self.materialize == "all":
            materialized = set(self.rels)
        on_demand = sorted(dl for dl in self.rels if dl not in materialized and bodies[dl])
        lines = [
            f"// Compiled from a {self.model.dialect} model by rune.models.",
            "// relationship(ObjectType, ObjectId, Relation, SubjectType, SubjectId, "
            "SubjectRelation): the relationships;",
            "// T__r(ObjectId, SubjectType, SubjectId, SubjectRelation): the subjects of T#r.",
        ]
        if self.userset_self:
            lines += [
                "",
                "// Every object some relationship names: a userset T:O#r has r on T:O.",
                f"{OBJECT}(T, O) :- {RELATIONSHIP}(T, O, _, _, _, _).",
                f'{OBJECT}(T, O) :- {RELATIONSHIP}(_, _, _, T, O, _), O != "*".',
            ]
        if self.exact:
            lines += [
                "",
                "// Every plain subject some relationship names (exact wildcard semantics).",
                f'{SUBJECT}(T, I) :- {RELATIONSHIP}(_, _, _, T, I, "").',
            ]
        for tname in self.model.types:
            lines += ["", f"// ---- {tname}"]
            for dl, rel in self.rels.items():
                if rel.type != tname:
                    continue
                mode = "exact" if dl in self.exact else "monotone"
                kind = "on demand" if dl in on_demand else "materialized"
                lines.append(f"// {rel.comment}  [{mode}, {kind}]")
                lines += bodies[dl] or [f"// ({tname}#{rel.name} is always empty)"]
        if on_demand:
            lines += ["", f".on_demand {', '.join(on_demand)}."]
        lines += ["", "// The model, for checks and lookups."]
        for tname, t in self.model.types.items():
            for rname in t.relations:
                dl = self.names[(tname, rname)]
                mode = "exact" if dl in self.exact else "monotone"
                lines.append(f"{META}({_q(tname)}, {_q(rname)}, {_q(dl)}, {_q(mode)}).")
        for tname in self.model.types:
            lines.append(f"zanzibar_type({_q(tname)}).")
        return CompiledModel(
            self.model,
            "\n".join(lines) + "\n",
            {k: v for k, v in self.names.items() if self.model.relation(*k) is not None},
            frozenset(self.exact),
            {dl: self.wild.get(dl, frozenset()) for dl in self.rels},
            frozenset(on_demand),
            frozenset(materialized),
        )


def _q(s: str) -> str:
    return str(_Const(s))


def _order(body: tuple[_Lit, ...]) -> list[_Lit]:
    """Positive atoms first, then comparisons and negations (each after its variables)."""
    pos = [lit for lit in body if isinstance(lit, _Atom) and not lit.neg]
    rest = [lit for lit in body if not (isinstance(lit, _Atom) and not lit.neg)]
    return pos + rest


def _recursive(deps: dict[str, set[str]]) -> set[str]:
    """Relations on a dependency cycle (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: set[str] = set()
    counter = [0]

    def visit(v: str) -> None:
        work = [(v, iter(sorted(deps[v])))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(deps[w]))))
                    advanced = True
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1 or node in deps[node]:
                    out.update(comp)

    for v in deps:
        if v not in index:
            visit(v)
    return out


def compile_model(
    model: Model,
    *,
    materialize: Literal["auto", "all"] = "auto",
    userset_self: bool | None = None,
) -> CompiledModel:
    """Check ``model`` and compile it (raise :class:`~rune.models.errors.ModelError`).

    The program is not run here; :func:`rune.models.check.ZanzibarView` or a bundle does.
    A recursion through an exclusion's right side is refused by the engine as not
    stratifiable when the program is loaded.

    ``userset_self`` (default: for OpenFGA models) adds to every relation ``T#r`` the userset
    ``T:O#r`` of each object O some relationship names, so that usersets which imply a relation
    are its subjects (OpenFGA's ListUsers and checks with userset users); SpiceDB lists only
    the subjects relationships name.
    """
    if userset_self is None:
        userset_self = model.dialect == "openfga"
    return _Compiler(model, materialize, userset_self).run()
