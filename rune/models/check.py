"""Checks, lookups and explanations in Zanzibar terms over the live views.

:class:`ZanzibarView` reads a compiled model's program (its ``zanzibar_relation`` facts) from
any engine running it (an ``Engine``, or an ``Authorizer``'s views) and answers::

    view.check("document:1", "view", "user:anne")            # bool
    view.lookup_resources("document", "view", "user:anne")   # LookupPage of "document:..."
    view.lookup_subjects("document:1", "view", "user")       # LookupPage of "user:..."
    view.explain("document:1", "view", "user:anne")          # the path, Zanzibar style

Semantics (see :mod:`rune.models.compile` for wildcards): a subject has a permission when its
row is there, or (plain subjects) when the wildcard row is and the relation is monotone; in an
exact relation a subject that some relationship names is answered by its own row, any other by
the wildcard row. A userset has itself: ``group:eng#member`` has ``member`` on ``group:eng``.

Pitfall: lookups of an exact relation holding a wildcard list ``type:*`` and not the subjects
excluded from it (OpenFGA's ListUsers does the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from rune.ivm.explain import Absence, Derivation
from rune.models.errors import RelationshipError
from rune.models.names import META, RELATIONSHIP, SUBJECT
from rune.models.tuples import Subject, parse_object, parse_subject
from rune.policies.lookup import decode_cursor, encode_cursor
from rune.policies.views import Views

__all__ = ["MAX_PAGE", "LookupPage", "ZanzibarView", "render_path"]

MAX_PAGE: Final = 1000


@dataclass(frozen=True, slots=True)
class LookupPage:
    items: list[str]
    """``type:id`` (resources) or subjects ``type:id``, ``type:id#rel``, ``type:*``."""
    cursor: str | None
    """Pass back for the next page; None on the last page."""

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "cursor": self.cursor}


class ZanzibarView:
    """Zanzibar questions over ``engine`` (which must run a compiled model's program).

    Cheap to build (one query of the model facts); build a new one after a program change.
    Raises :class:`~rune.models.errors.RelationshipError` for malformed arguments and for types
    or relations the model does not have."""

    def __init__(self, engine: Views) -> None:
        self.engine = engine
        self.relations: dict[tuple[str, str], tuple[str, bool]] = {}
        self.types: set[str] = set()
        if engine.arity(META) is not None:
            for t, r, dl, mode in engine.lookup(META, (None, None, None, None)):
                self.relations[(str(t), str(r))] = (str(dl), mode == "exact")
                self.types.add(str(t))
        if engine.arity("zanzibar_type") is not None:
            self.types.update(str(row[0]) for row in engine.lookup("zanzibar_type", (None,)))
        self.has_subjects = engine.arity(SUBJECT) is not None
        self.empty = {dl for dl, _ in self.relations.values() if engine.arity(dl) is None}
        """Relations without rules (``nil``): always empty, unknown to the engine."""

    def rows(self, dl: str, pattern: tuple[str | None, ...]) -> list[tuple[object, ...]]:
        """The rows of ``dl`` matching ``pattern`` (None: any value)."""
        if dl in self.empty:
            return []
        return list(self.engine.lookup(dl, pattern))

    def _contains(self, dl: str, row: tuple[str, ...]) -> bool:
        return dl not in self.empty and self.engine.contains(dl, row)

    @property
    def has_model(self) -> bool:
        return bool(self.types)

    def _relation(self, type_name: str, relation: str, where: str) -> tuple[str, bool]:
        if type_name not in self.types:
            raise RelationshipError(f"{where}: the model has no type {type_name!r}")
        found = self.relations.get((type_name, relation))
        if found is None:
            raise RelationshipError(
                f"{where}: type {type_name!r} has no relation or permission {relation!r}"
            )
        return found

    def _subject(self, text: str, where: str = "subject") -> Subject:
        s = parse_subject(text, where)
        if s.type not in self.types:
            raise RelationshipError(f"{where}: the model has no type {s.type!r}")
        if s.relation and (s.type, s.relation) not in self.relations:
            raise RelationshipError(f"{where}: type {s.type!r} has no relation {s.relation!r}")
        return s

    def _known(self, s: Subject) -> bool:
        return self.has_subjects and self.engine.contains(SUBJECT, (s.type, s.id))

    def _row(self, dl: str, exact: bool, oid: str, s: Subject) -> tuple[str, str, str, str] | None:
        """The row that decides (oid, s), or None when no row can."""
        contains = self._contains
        if s.relation:
            row = (oid, s.type, s.id, s.relation)
            return row if contains(dl, row) else None
        star = (oid, s.type, "*", "")
        if exact:
            if s.id != "*" and self._known(s):
                row = (oid, s.type, s.id, "")
                return row if contains(dl, row) else None
            return star if contains(dl, star) else None
        row = (oid, s.type, s.id, "")
        if contains(dl, row):
            return row
        return star if contains(dl, star) else None

    def check(self, resource: str, permission: str, subject: str) -> bool:
        """Whether ``subject`` has ``permission`` on ``resource``."""
        otype, oid = parse_object(resource)
        dl, exact = self._relation(otype, permission, "permission")
        s = self._subject(subject)
        if (s.type, s.id, s.relation) == (otype, oid, permission):
            return True
        return self._row(dl, exact, oid, s) is not None

    def lookup_resources(
        self,
        resource_type: str,
        permission: str,
        subject: str,
        cursor: str | None = None,
        limit: int = 100,
    ) -> LookupPage:
        """Objects of ``resource_type`` on which ``subject`` has ``permission``, by id."""
        dl, exact = self._relation(resource_type, permission, "permission")
        s = self._subject(subject)
        lookup = self.rows
        if s.relation:
            found = {r[0] for r in lookup(dl, (None, s.type, s.id, s.relation))}
            if s.type == resource_type and s.relation == permission:
                found.add(s.id)
        elif exact and (s.id == "*" or not self._known(s)):
            found = {r[0] for r in lookup(dl, (None, s.type, "*", ""))}
        else:
            found = {r[0] for r in lookup(dl, (None, s.type, s.id, ""))}
            if not exact:
                found |= {r[0] for r in lookup(dl, (None, s.type, "*", ""))}
        return _page([f"{resource_type}:{i}" for i in sorted(map(str, found))], cursor, limit)

    def lookup_subjects(
        self,
        resource: str,
        permission: str,
        subject_type: str,
        subject_relation: str = "",
        cursor: str | None = None,
        limit: int = 100,
    ) -> LookupPage:
        """Subjects of ``subject_type`` (with ``subject_relation``, or plain ones and the
        wildcard) that have ``permission`` on ``resource``, by id."""
        otype, oid = parse_object(resource)
        dl, exact = self._relation(otype, permission, "permission")
        if subject_type not in self.types:
            raise RelationshipError(f"subject_type: the model has no type {subject_type!r}")
        if subject_relation and (subject_type, subject_relation) not in self.relations:
            raise RelationshipError(
                f"subject_relation: type {subject_type!r} has no relation {subject_relation!r}"
            )
        rows = self.rows(dl, (oid, subject_type, None, subject_relation))
        ids = {str(r[2]) for r in rows}
        if subject_relation and subject_type == otype and subject_relation == permission:
            ids.add(oid)
        if exact and not subject_relation and "*" in ids:
            ids = {"*"}
        suffix = f"#{subject_relation}" if subject_relation else ""
        items = [f"{subject_type}:{i}{suffix}" for i in sorted(ids)]
        return _page(items, cursor, limit)

    def explain(self, resource: str, permission: str, subject: str) -> str:
        """The path that grants ``permission`` (relationships and the relations they pass
        through), or, when none does, each rule tried and the step that failed."""
        otype, oid = parse_object(resource)
        dl, exact = self._relation(otype, permission, "permission")
        s = self._subject(subject)
        if (s.type, s.id, s.relation) == (otype, oid, permission):
            return f"{resource}#{permission}@{subject}: a userset has itself"
        if dl in self.empty:
            return f"{resource}#{permission}@{subject}: no path ({otype}#{permission} is nil)"
        row = self._row(dl, exact, oid, s) or (oid, s.type, s.id, s.relation)
        explain = getattr(self.engine, "explain", None)
        if explain is None:
            return f"{resource}#{permission}@{subject}: the views cannot explain"
        return render_path(explain(dl, row), self)


def _page(items: list[str], cursor: str | None, limit: int) -> LookupPage:
    if not 1 <= limit <= MAX_PAGE:
        raise RelationshipError(f"limit must be between 1 and {MAX_PAGE}")
    start = 0
    if cursor:
        try:
            last = decode_cursor(cursor)
        except Exception:
            raise RelationshipError("malformed cursor") from None
        import bisect

        start = bisect.bisect_right(items, last)
    page = items[start : start + limit]
    more = start + limit < len(items)
    return LookupPage(page, encode_cursor(page[-1]) if more and page else None)


def _names(view: ZanzibarView) -> dict[str, tuple[str, str]]:
    return {dl: key for key, (dl, _) in view.relations.items()}


def _zanzibar(relation: str, values: Iterable[object], names: dict[str, tuple[str, str]]) -> str:
    v = [str(x) for x in values]
    if relation == RELATIONSHIP and len(v) == 6:
        subj = f"{v[3]}:{v[4]}" + (f"#{v[5]}" if v[5] else "")
        return f"{v[0]}:{v[1]}#{v[2]}@{subj}  (relationship)"
    if relation in names and len(v) == 4:
        t, r = names[relation]
        subj = f"{v[1]}:{v[2]}" + (f"#{v[3]}" if v[3] else "")
        return f"{t}:{v[0]}#{r}@{subj}"
    if relation == SUBJECT and len(v) == 2:
        return f"{v[0]}:{v[1]} is a known subject"
    return f"{relation}({', '.join(v)})"


def render_path(tree: Derivation | Absence, view: ZanzibarView) -> str:
    """A derivation as an indented Zanzibar path: each line ``type:id#relation@subject``,
    relationships marked, the model rule (line of the compiled program) after ``<-``."""
    names = _names(view)
    if isinstance(tree, Absence):
        head = _zanzibar(tree.relation, tree.values, names)
        lines = [f"{head}: no path"]
        for a in tree.attempts:
            lines.append(f"  tried line {a.line}: stopped at {a.failed} ({a.reason})")
        return "\n".join(lines)
    out: list[str] = []

    def walk(d: Derivation, depth: int) -> None:
        if d.relation == SUBJECT:
            return
        text = _zanzibar(d.relation, d.values, names)
        if d.absent:
            text += "  unless " + "; ".join(d.absent) + " (absent)"
        out.append("  " * depth + text)
        for c in d.children:
            walk(c, depth + 1)

    walk(tree, 0)
    return "\n".join(out)
