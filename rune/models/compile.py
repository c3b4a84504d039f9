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

The stages: :mod:`rune.models.prepare` names and checks the relations and works out their
wildcard modes; this module writes each relation's rules (with the term algebra of
:mod:`rune.models.terms`), decides what is materialized and assembles the program text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from rune.models.ir import (
    Arrow,
    Computed,
    Exclusion,
    Expr,
    Intersection,
    Model,
    Nil,
    This,
    Union,
)
from rune.models.names import META, OBJECT, RELATIONSHIP, SUBJECT, datalog_name
from rune.models.prepare import Prepared, RelationToCompile
from rune.models.terms import (
    EMPTY,
    STAR,
    Alt,
    Atom,
    Cmp,
    Const,
    Lit,
    Term,
    Var,
    order_body,
    quote,
    subst,
    subst_term,
    unify,
)

__all__ = [
    "META",
    "RELATIONSHIP",
    "SUBJECT",
    "CompiledModel",
    "compile_model",
    "datalog_name",
]

_T, _I, _R = Var("T"), Var("I"), Var("R")
_OBJ = Var("O")


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
    """Writes the rules of a prepared model, and the program around them."""

    def __init__(
        self, model: Model, materialize: Literal["auto", "all"], userset_self: bool
    ) -> None:
        self.model = model
        self.userset_self = userset_self
        self.materialize = materialize
        self.prepared = Prepared(model)
        self.rels = self.prepared.rels
        self.names = self.prepared.names
        self.wild = self.prepared.wild
        self.exact = self.prepared.exact
        self.fresh = 0

    # -- alternatives --------------------------------------------------------------------

    def var(self, prefix: str) -> Var:
        self.fresh += 1
        return Var(f"{prefix}{self.fresh}")

    def access(self, dl: str, obj: Term, exact: bool) -> list[Alt]:
        alts = [Alt((Atom(dl, (obj, _T, _I, _R)),), (_T, _I, _R))]
        if dl in self.exact:
            return alts
        for w in sorted(self.wild.get(dl, ())):
            atom = Atom(dl, (obj, Const(w), STAR, EMPTY))
            if exact:
                alts.append(Alt((atom, Atom(SUBJECT, (Const(w), _I))), (Const(w), _I, EMPTY)))
            else:
                alts.append(Alt((atom,), wild=w))
        return alts

    def direct_alts(self, rel: RelationToCompile, obj: Term, exact: bool) -> list[Alt]:
        """The alternatives of a relation's directly related subjects (``[user, group#member,
        user:*]``)."""
        tname = rel.type
        out: list[Alt] = []
        owner = rel.owner
        for st in owner.types:
            u = Const(st.type)
            base = (Const(tname), obj, Const(owner.name), u)
            if st.wildcard:
                tup = Atom(RELATIONSHIP, (*base, STAR, EMPTY))
                if exact:
                    out.append(Alt((tup, Atom(SUBJECT, (u, _I))), (u, _I, EMPTY)))
                else:
                    out.append(Alt((tup,), (u, STAR, EMPTY)))
                    out.append(Alt((tup,), wild=st.type))
            elif st.relation is None:
                tup = Atom(RELATIONSHIP, (*base, _I, EMPTY))
                out.append(Alt((tup, Cmp(_I, "!=", STAR)), (u, _I, EMPTY)))
            else:
                g = self.var("G")
                tup = Atom(RELATIONSHIP, (*base, g, Const(st.relation)))
                out.append(Alt((tup,), (u, g, Const(st.relation))))
                for a in self.access(self.names[(st.type, st.relation)], g, exact):
                    out.append(Alt((tup, *a.body), a.subj, a.wild))
        return out

    def arrow_alts(self, tname: str, e: Arrow, obj: Term, exact: bool) -> list[Alt]:
        """The alternatives of ``tupleset->relation``: through each target of the tupleset."""
        out: list[Alt] = []
        for utype, urel, dl in self.prepared.tupleset_targets(tname, e):
            f = self.var("F")
            tup = Atom(
                RELATIONSHIP,
                (Const(tname), obj, Const(e.tupleset), Const(utype), f, Const(urel or "")),
            )
            for a in self.access(dl, f, exact):
                out.append(Alt((tup, *a.body), a.subj, a.wild))
        return out

    def alts(self, rel: RelationToCompile, e: Expr, obj: Term, exact: bool) -> list[Alt]:
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
            combos: list[list[Alt]] = [[]]
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
                negs: list[Lit] = [Atom(sub, (obj, t, i, r), neg=True)]
                if sub not in self.exact and self.wild.get(sub) and i != STAR:
                    negs.append(Atom(sub, (obj, t, STAR, r), neg=True))
                out.append(Alt((*a.body, *negs), a.subj))
            return out
        raise AssertionError(e)

    def meet(self, combo: list[Alt]) -> Alt | None:
        wilds = {a.wild for a in combo if a.wild is not None}
        if len(wilds) > 1:
            return None
        explicit = [a for a in combo if a.subj is not None]
        body = [lit for a in combo for lit in a.body]
        if not explicit:
            return Alt(tuple(body), wild=wilds.pop())
        pairs: list[tuple[Term, Term]] = []
        first = explicit[0].subj
        assert first is not None
        for a in explicit[1:]:
            assert a.subj is not None
            pairs += list(zip(first, a.subj, strict=True))
        if wilds:
            w = next(iter(wilds))
            pairs += [(first[0], Const(w)), (first[2], EMPTY)]
        s = unify(pairs)
        if s is None:
            return None
        subj = (subst_term(first[0], s), subst_term(first[1], s), subst_term(first[2], s))
        lits: list[Lit] = []
        for lit in body:
            lit = subst(lit, s)
            if lit not in lits:
                lits.append(lit)
        return Alt(tuple(lits), subj)

    # -- output --------------------------------------------------------------------------

    def rules(self, rel: RelationToCompile) -> list[str]:
        self.fresh = 0
        exact = rel.dl in self.exact
        out = []
        if self.userset_self and self.model.relation(rel.type, rel.name) is not None:
            t, r = Const(rel.type), Const(rel.name)
            out.append(f"{rel.dl}({_OBJ}, {t}, {_OBJ}, {r}) :- {OBJECT}({t}, {_OBJ}).")
        for a in self.alts(rel, rel.expr, _OBJ, exact):
            if a.subj is None:
                continue
            body = ", ".join(map(str, order_body(a.body)))
            out.append(f"{rel.dl}({_OBJ}, {', '.join(map(str, a.subj))}) :- {body}.")
        return out

    def run(self) -> CompiledModel:
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
                lines.append(f"{META}({quote(tname)}, {quote(rname)}, {quote(dl)}, {quote(mode)}).")
        for tname in self.model.types:
            lines.append(f"zanzibar_type({quote(tname)}).")
        return CompiledModel(
            self.model,
            "\n".join(lines) + "\n",
            {k: v for k, v in self.names.items() if self.model.relation(*k) is not None},
            frozenset(self.exact),
            {dl: self.wild.get(dl, frozenset()) for dl in self.rels},
            frozenset(on_demand),
            frozenset(materialized),
        )


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
