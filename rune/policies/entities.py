"""Cedar JSON entities: normalization, their Datalog facts, and the entity store.

An entity event carries Cedar's JSON entity format in full: ``uid``, ``attrs`` (records, sets,
entity references, extension values), ``parents``, ``tags``; empty ids and action entities
(with action groups as parents) included. An upsert replaces the previous version exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson

from rune.ivm.values import EntityRef, Value
from rune.policies.builtin_rules import ATTR, ATTR_ELEM, ENTITY, PARENT, TAG
from rune.policies.cedarjson import check_value
from rune.policies.errors import EventError
from rune.policies.uids import kind, parse_uid, uid_json

__all__ = ["Entity", "EntityStore", "Fact", "FactKey", "fact_key", "parse_entity"]

Fact = tuple[str, tuple[Value, ...]]
FactKey = tuple[str, tuple[tuple[bool, Value], ...]]


def fact_key(relation: str, args: tuple[Value, ...]) -> FactKey:
    """A hashable key that keeps ``True`` and ``1`` apart (Python merges them in sets)."""
    return (relation, tuple((isinstance(v, bool), v) for v in args))


@dataclass(frozen=True, slots=True)
class Entity:
    uid: EntityRef
    attrs: dict[str, object]
    parents: tuple[EntityRef, ...]
    tags: dict[str, object] | None
    refs: frozenset[EntityRef]
    """Entity references inside attributes and tags (followed when building Cedar slices)."""
    body: str = field(repr=False)
    """Pre-serialized ``"attrs":{...}`` (and ``"tags"``) JSON, reused by every slice."""

    def facts(self) -> Iterator[Fact]:
        uid = self.uid
        yield (ENTITY, (uid,))
        for p in self.parents:
            yield (PARENT, (uid, p))
        for name, value in self.attrs.items():
            scalar = _scalar(value)
            if scalar is not None:
                yield (ATTR, (uid, name, scalar))
            elif isinstance(value, list):
                for item in value:
                    s = _scalar(item)
                    if s is not None:
                        yield (ATTR_ELEM, (uid, name, s))
        for key, value in (self.tags or {}).items():
            scalar = _scalar(value)
            if scalar is not None:
                yield (TAG, (uid, key, scalar))

    def fact_keys(self) -> dict[FactKey, Fact]:
        return {fact_key(rel, args): (rel, args) for rel, args in self.facts()}

    def to_json(self, parents: list[EntityRef] | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "uid": uid_json(self.uid),
            "attrs": self.attrs,
            "parents": [uid_json(p) for p in (self.parents if parents is None else parents)],
        }
        if self.tags is not None:
            out["tags"] = self.tags
        return out


def _scalar(value: object) -> Value | None:
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, dict) and "__entity" in value:
        inner = value["__entity"]
        return EntityRef(inner["type"], inner["id"])
    return None


_ENTITY_FIELDS = frozenset({"uid", "attrs", "parents", "tags"})


def parse_entity(obj: object, where: str = "entity") -> Entity:
    """Validate one Cedar JSON entity; raise :class:`EventError` naming the bad path."""
    if not isinstance(obj, dict):
        raise EventError(f"expected an entity object, got {kind(obj)}", where)
    extra = set(obj) - _ENTITY_FIELDS
    if extra:
        raise EventError(f"unknown field {sorted(extra)[0]!r} in entity", where)
    if "uid" not in obj:
        raise EventError("entity has no 'uid'", where)
    uid = parse_uid(obj["uid"], f"{where}.uid", EventError)
    attrs = obj.get("attrs", {})
    if not isinstance(attrs, dict):
        raise EventError(f"'attrs' must be an object, got {kind(attrs)}", f"{where}.attrs")
    refs: set[EntityRef] = set()
    check_value(attrs, f"{where}.attrs", EventError, refs)
    raw_parents = obj.get("parents", [])
    if not isinstance(raw_parents, list):
        raise EventError(f"'parents' must be an array, got {kind(raw_parents)}", f"{where}.parents")
    parents = sorted(
        {parse_uid(p, f"{where}.parents[{i}]", EventError) for i, p in enumerate(raw_parents)}
    )
    tags = obj.get("tags")
    if tags is not None:
        if not isinstance(tags, dict):
            raise EventError(f"'tags' must be an object, got {kind(tags)}", f"{where}.tags")
        check_value(tags, f"{where}.tags", EventError, refs)
    body = orjson.dumps(attrs).decode()
    body = f'"attrs":{body}'
    if tags is not None:
        body += f',"tags":{orjson.dumps(tags).decode()}'
    return Entity(uid, attrs, tuple(parents), tags, frozenset(refs), body)


class EntityStore:
    """Current version of every upserted entity, with an index by entity type."""

    __slots__ = ("_by_type", "_entities")

    def __init__(self) -> None:
        self._entities: dict[EntityRef, Entity] = {}
        self._by_type: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entities)

    def __contains__(self, uid: object) -> bool:
        return uid in self._entities

    def get(self, uid: EntityRef) -> Entity | None:
        return self._entities.get(uid)

    def put(self, entity: Entity) -> None:
        self._entities[entity.uid] = entity
        self._by_type.setdefault(entity.uid.type, set()).add(entity.uid.id)

    def remove(self, uid: EntityRef) -> None:
        if self._entities.pop(uid, None) is not None:
            ids = self._by_type[uid.type]
            ids.discard(uid.id)
            if not ids:
                del self._by_type[uid.type]

    def ids_of_type(self, entity_type: str) -> set[str]:
        return self._by_type.get(entity_type, set())

    def __iter__(self) -> Iterator[Entity]:
        return iter(self._entities.values())
