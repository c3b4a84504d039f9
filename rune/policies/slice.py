"""Entity slices: the part of the live views Cedar needs for a request.

The slice's entity set R is the closure of the seeds (principal, action, resource, the entity
references in the context, the entity literals of the policies: every uid of the policy set's
JSON form, ``action in [..]`` elements and template-link values included, see
``cedartext.policy_info``) under the entity references inside attributes and tags, so
``resource.owner.dept`` can be read. Each entity of R that was upserted carries its attributes
and tags from the entity store. A seed too many is harmless (it only adds true facts); a seed
too few can change Cedar's answer. A hierarchy cycle outside R is not seen here: the decision
function checks ``in_cycle`` first (Cedar refuses such entity data wherever the cycle is).

Hierarchy: Cedar's ``in`` sees the ``member_of`` relation (direct edges, to which bundle rules
may add). Every entity of R gets as ``parents`` its ancestors under ``member_of`` (the engine's
materialized closure ``entity_in``) that are themselves in R. That is exact: the right-hand
side of an ``in`` can only evaluate to an entity of R (a literal, a request variable, a context
value or an attribute/tag value of an entity in R), so ancestors outside R can never be asked
about. It keeps the slice small (a user in 50 nested groups still adds one entity). An entity
that was never upserted but has such ancestors (membership derived by Datalog) appears with
empty attributes; one with neither is left out, as Cedar would not know it either.

Reading the hierarchy: only an entity with ``has_members`` (the built-in projection of
``entity_in`` on its second column) can be an ancestor, so for each entity E of R the slice
asks ``entity_in(E, A)`` only for the A of R with ``has_members(A)``: with the usual handful
of such A that is a few indexed membership tests instead of listing every ancestor of E
(a user in 20 groups).

Per-entity data (serialized attributes, references, the ``has_members`` flag and the
``entity_in`` answers asked so far) is memoized in a :class:`FragmentMemo` that outlives
updates: the authorizer has it drop exactly the entities an update changed
(:meth:`FragmentMemo.forget`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import orjson

from rune.ivm.values import EntityRef
from rune.policies.builtin_rules import ENTITY_IN, HAS_MEMBERS
from rune.policies.entities import EntityStore
from rune.policies.errors import RequestError
from rune.policies.views import ChangeLike, Views

__all__ = ["MAX_SLICE_ENTITIES", "FragmentMemo", "Node", "Slice"]

MAX_SLICE_ENTITIES: Final = 10_000

_SLICE_RELATIONS: Final = (ENTITY_IN, HAS_MEMBERS)
"""Relations the Cedar slices read (besides the entity store)."""
_MAX_PRECISE_ROWS: Final = 4096
"""Above this many changed rows of those, :meth:`FragmentMemo.forget` clears the memo
instead of picking."""


def uid_text(ref: EntityRef) -> str:
    """``{"type":T,"id":I}`` JSON of an entity reference."""
    return orjson.dumps({"type": ref.type, "id": ref.id}).decode()


class Node:
    """What a slice needs of one entity: its JSON and, filled lazily, its hierarchy facts."""

    __slots__ = ("ancestor_of", "head", "is_parent", "refs", "uid")

    def __init__(self, uid: str, head: str | None, refs: frozenset[EntityRef]) -> None:
        self.uid = uid
        """The entity's ``{"type","id"}`` JSON."""
        self.head = head
        """``{"uid":...,"attrs":{...},"parents":[`` of an upserted entity (tags included),
        None when it was never upserted."""
        self.refs = refs
        """Entity references inside attributes and tags."""
        self.is_parent: bool | None = None
        """``has_members(E)``: E is an ancestor of some entity (None: not read yet)."""
        self.ancestor_of: dict[EntityRef, bool] = {}
        """``entity_in(E, A)`` for the entities A asked about so far."""


class FragmentMemo:
    """Per-entity :class:`Node` data.

    A node reads the entity store (the entity's attributes, tags and references), the
    ``entity_in`` rows whose first column is the entity and its ``has_members`` row. The
    owner calls :meth:`forget` with an update's changes (or :meth:`discard` with the entities
    whose store entry or rows of those relations changed), or :meth:`clear` (a bundle swap,
    a change too large to list), so that every node kept is the one the current views and
    store give. Bounded by ``max_entries`` (all dropped when full; 0 keeps nothing).
    """

    __slots__ = ("_data", "max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: dict[EntityRef, Node] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, uid: EntityRef) -> Node | None:
        return self._data.get(uid)

    def put(self, uid: EntityRef, node: Node) -> None:
        if len(self._data) >= self.max_entries:
            self._data = {}
            if not self.max_entries:
                return  # memo off
        self._data[uid] = node

    def discard(self, uids: Iterable[EntityRef]) -> None:
        data = self._data
        if data:
            for uid in uids:
                data.pop(uid, None)

    def clear(self) -> None:
        if self._data:
            self._data = {}

    def forget(self, changes: Mapping[str, ChangeLike], entities: Iterable[EntityRef]) -> None:
        """Drop the nodes of exactly the entities an update changed: store entries
        (``entities``), and ``entity_in`` / ``has_members`` rows of ``changes`` (by their
        first column). A change too large to list clears everything instead."""
        if not self._data:
            return
        rows: list[ChangeLike] = [
            ch for r in _SLICE_RELATIONS if (ch := changes.get(r)) is not None
        ]
        if sum(map(len, rows)) > _MAX_PRECISE_ROWS:
            self.clear()
            return
        for ch in rows:
            for part in (ch.added, ch.removed):
                self.discard(e for row in part if isinstance(e := row[0], EntityRef))
        self.discard(entities)


class Slice:
    """A growing entity set R (one slice may serve a batch of requests)."""

    __slots__ = ("_memo", "_nodes", "_store", "_views")

    def __init__(self, store: EntityStore, views: Views, memo: FragmentMemo | None = None) -> None:
        self._store = store
        self._views = views
        self._memo = memo if memo is not None else FragmentMemo()
        self._nodes: dict[EntityRef, Node] = {}

    def __len__(self) -> int:
        return len(self._nodes)

    def add(self, seeds: Iterable[EntityRef]) -> None:
        nodes, memo = self._nodes, self._memo
        known = memo.get
        stack = list(seeds)
        while stack:
            uid = stack.pop()
            if uid in nodes:
                continue
            node = known(uid)
            if node is None:
                node = self._node(uid)
                memo.put(uid, node)
            nodes[uid] = node
            if node.refs:
                if len(nodes) > MAX_SLICE_ENTITIES:
                    raise RequestError(
                        f"the Cedar entity slice exceeds {MAX_SLICE_ENTITIES} entities", "slice"
                    )
                stack.extend(node.refs)
        if len(nodes) > MAX_SLICE_ENTITIES:
            raise RequestError(
                f"the Cedar entity slice exceeds {MAX_SLICE_ENTITIES} entities", "slice"
            )

    def _node(self, uid: EntityRef) -> Node:
        text = uid_text(uid)
        entity = self._store.get(uid)
        if entity is None:
            return Node(text, None, frozenset())
        return Node(text, f'{{"uid":{text},{entity.body},"parents":[', entity.refs)

    def to_json(self) -> str:
        """Cedar's JSON entity list of R: each entity with its ancestors in R as parents.

        Only entities with ``has_members`` can be ancestors, so ``entity_in`` is read for those
        pairs only (and remembered in the nodes)."""
        nodes = self._nodes
        views = self._views
        targets = []
        for uid, node in nodes.items():
            flag = node.is_parent
            if flag is None:
                flag = node.is_parent = views.contains(HAS_MEMBERS, (uid,))
            if flag:
                targets.append((uid, node))
        parts = []
        for uid, node in nodes.items():
            if targets:
                known = node.ancestor_of
                parents = []
                for a, anode in targets:
                    hit = known.get(a)
                    if hit is None:
                        hit = known[a] = a != uid and views.contains(ENTITY_IN, (uid, a))
                    if hit:
                        parents.append(anode.uid)
                if parents:
                    head = node.head or f'{{"uid":{node.uid},"attrs":{{}},"parents":['
                    parts.append(head + ",".join(parents) + "]}")
                    continue
            if node.head is not None:
                parts.append(node.head + "]}")
        return "[" + ",".join(parts) + "]"
