"""Entity slices: the part of the live views Cedar needs for a request.

The slice's entity set R is the closure of the seeds (principal, action, resource, the entity
references in the context, the entity literals of the policies) under the entity references
inside attributes and tags, so ``resource.owner.dept`` can be read. Each entity of R that was
upserted carries its attributes and tags from the entity store.

Hierarchy: Cedar's ``in`` sees the ``member_of`` relation (direct edges, to which bundle rules
may add). Every entity of R gets as ``parents`` its ancestors under ``member_of`` (the engine's
materialized closure ``entity_in``) that are themselves in R. That is exact: the right-hand
side of an ``in`` can only evaluate to an entity of R (a literal, a request variable, a context
value or an attribute/tag value of an entity in R), so ancestors outside R can never be asked
about. It keeps the slice small (a user in 50 nested groups still adds one entity). An entity
that was never upserted but has such ancestors (membership derived by Datalog) appears with
empty attributes; one with neither is left out, as Cedar would not know it either.

Per-entity data (ancestors, serialized attributes, references) is memoized until the next change
of the views (:class:`FragmentMemo`), so entities shared by many requests are read once.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Final, NamedTuple

import orjson

from rune.ivm.values import EntityRef
from rune.policies import builtins as B
from rune.policies.entities import EntityStore
from rune.policies.errors import RequestError
from rune.policies.views import Views

__all__ = ["MAX_SLICE_ENTITIES", "FragmentMemo", "Node", "Slice"]

MAX_SLICE_ENTITIES: Final = 10_000


@lru_cache(maxsize=65536)
def uid_text(ref: EntityRef) -> str:
    return orjson.dumps({"type": ref.type, "id": ref.id}).decode()


class Node(NamedTuple):
    body: str | None
    """``"attrs":{...}`` JSON of an upserted entity, None when it was never upserted."""
    ancestors: frozenset[EntityRef]
    refs: frozenset[EntityRef]


class FragmentMemo:
    """Per-entity :class:`Node` data, valid until :meth:`clear` (any change of the views)."""

    __slots__ = ("_data", "max_entries")

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._data: dict[EntityRef, Node] = {}

    def get(self, uid: EntityRef) -> Node | None:
        return self._data.get(uid)

    def put(self, uid: EntityRef, node: Node) -> None:
        if len(self._data) >= self.max_entries:
            self._data = {}
        self._data[uid] = node

    def clear(self) -> None:
        if self._data:
            self._data = {}


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
        queue = [s for s in seeds if s not in nodes]
        while queue:
            uid = queue.pop()
            if uid in nodes:
                continue
            node = memo.get(uid)
            if node is None:
                node = self._node(uid)
                memo.put(uid, node)
            nodes[uid] = node
            if len(nodes) > MAX_SLICE_ENTITIES:
                raise RequestError(
                    f"the Cedar entity slice exceeds {MAX_SLICE_ENTITIES} entities", "slice"
                )
            queue.extend(r for r in node.refs if r not in nodes)

    def _node(self, uid: EntityRef) -> Node:
        ancestors = frozenset(
            row[1]
            for row in self._views.lookup(B.ENTITY_IN, (uid, None))
            if isinstance(row[1], EntityRef)
        )
        entity = self._store.get(uid)
        if entity is None:
            return Node(None, ancestors, frozenset())
        return Node(entity.body, ancestors, entity.refs)

    def to_json(self) -> str:
        nodes = self._nodes
        parts = []
        for uid, node in nodes.items():
            parents = (
                [a for a in node.ancestors if a in nodes and a != uid] if node.ancestors else []
            )
            if node.body is None and not parents:
                continue
            plist = ",".join(uid_text(p) for p in parents)
            body = node.body if node.body is not None else '"attrs":{}'
            parts.append(f'{{"uid":{uid_text(uid)},{body},"parents":[{plist}]}}')
        return "[" + ",".join(parts) + "]"
