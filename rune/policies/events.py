"""Fact and entity events of contract v1, netted into one all-or-nothing engine update.

``net_events(events, store, schema)`` validates every event first and nets the batch as if the
events were applied one after the other (the last event on a fact or entity wins), so that the
resulting insert and delete sets can go to one ``Engine.update``; nothing is applied here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import cedarpy
import orjson

from rune.ivm.values import EntityRef, Value
from rune.models.errors import ModelError
from rune.models.tuples import fact_event, is_relationship_event
from rune.policies.builtin_rules import ALLOW, DENY, PROTECTED_RELATIONS
from rune.policies.entities import Entity, EntityStore, Fact, FactKey, fact_key, parse_entity
from rune.policies.errors import EventError
from rune.policies.uids import kind, parse_scalar, parse_uid

__all__ = ["MAX_FACT_ARITY", "NetUpdate", "net_events"]

MAX_FACT_ARITY: Final = 64
_RELATION_RE: Final = re.compile(r"[a-z_][A-Za-z0-9_]*\Z")
_OPTIONAL: Final = frozenset({"tenant", "ts"})


@dataclass(slots=True)
class NetUpdate:
    """What a batch of events does: engine rows to insert and delete, entities to change."""

    insert: dict[str, list[tuple[Value, ...]]] = field(default_factory=dict)
    delete: dict[str, list[tuple[Value, ...]]] = field(default_factory=dict)
    entities: dict[EntityRef, Entity | None] = field(default_factory=dict)
    """Entity store changes to make once the engine accepted the update (None: delete)."""

    @property
    def empty(self) -> bool:
        return not (self.insert or self.delete or self.entities)


def net_events(
    events: Sequence[object],
    store: EntityStore,
    schema: cedarpy.Schema | None,
    prefix: str = "events",
    arity: Callable[[str], int | None] = lambda rel: None,
) -> NetUpdate:
    """Validate ``events`` and net them into a :class:`NetUpdate` (raise :class:`EventError`).

    ``arity`` gives the engine's arity of a relation (None when unknown) so that a fact with
    the wrong number of arguments is reported at its place.
    """
    facts: dict[FactKey, tuple[Fact, bool]] = {}
    arities: dict[str, int | None] = {}
    overlay: dict[EntityRef, Entity | None] = {}
    wheres: dict[EntityRef, str] = {}
    for i, event in enumerate(events):
        where = f"{prefix}[{i}]." if prefix else ""
        _one(event, where, facts, overlay, wheres, arities, arity)
    upserted = [e for e in overlay.values() if e is not None]
    if upserted:
        _cedar_check(upserted, schema, wheres)
    out = NetUpdate()
    for (rel, args), present in facts.values():
        (out.insert if present else out.delete).setdefault(rel, []).append(args)
    for uid, new in overlay.items():
        old = store.get(uid)
        old_facts = old.fact_keys() if old is not None else {}
        new_facts = new.fact_keys() if new is not None else {}
        for key, (rel, args) in old_facts.items():
            if key not in new_facts:
                out.delete.setdefault(rel, []).append(args)
        for key, (rel, args) in new_facts.items():
            if key not in old_facts:
                out.insert.setdefault(rel, []).append(args)
        if old != new:
            out.entities[uid] = new
    return out


def _one(
    event: object,
    where: str,
    facts: dict[FactKey, tuple[Fact, bool]],
    overlay: dict[EntityRef, Entity | None],
    wheres: dict[EntityRef, str],
    arities: dict[str, int | None],
    arity: Callable[[str], int | None],
) -> None:
    if not isinstance(event, dict):
        raise EventError(f"expected an event object, got {kind(event)}", where.rstrip("."))
    op = event.get("op")
    if op in ("assert", "retract") and "fact" not in event and is_relationship_event(event):
        try:
            event = fact_event(event)  # a Zanzibar relationship is a fact (rune.models)
        except ModelError as exc:
            raise EventError(exc.message, where.rstrip(".")) from None
    if op in ("assert", "retract"):
        _fields(event, "fact", where)
        rel, args = _fact(event["fact"], f"{where}fact")
        if rel not in arities:
            arities[rel] = arity(rel)
        known = arities[rel]
        if known is None:
            arities[rel] = len(args)
        elif known != len(args):
            raise EventError(
                f"relation {rel!r} has {known} arguments, this fact has {len(args)}",
                f"{where}fact",
            )
        facts[fact_key(rel, args)] = ((rel, args), op == "assert")
    elif op == "upsert":
        _fields(event, "entity", where)
        entity = parse_entity(event["entity"], f"{where}entity")
        overlay[entity.uid] = entity
        wheres[entity.uid] = f"{where}entity"
    elif op == "delete":
        _fields(event, "entity", where)
        body = event["entity"]
        if not isinstance(body, dict):
            raise EventError(f"expected an entity object, got {kind(body)}", f"{where}entity")
        if set(body) - {"uid"} or "uid" not in body:
            raise EventError("a delete names only the entity's 'uid'", f"{where}entity")
        uid = parse_uid(body["uid"], f"{where}entity.uid", EventError)
        overlay[uid] = None
    else:
        raise EventError(
            f"'op' must be one of assert, retract, upsert, delete; got {op!r}", f"{where}op"
        )


def _fields(event: dict[str, object], body: str, where: str) -> None:
    if body not in event:
        raise EventError(f"{event['op']} event needs a {body!r} field", where.rstrip("."))
    extra = set(event) - {"op", body} - _OPTIONAL
    if extra:
        raise EventError(f"unknown field {sorted(extra)[0]!r}", f"{where}{sorted(extra)[0]}")


def _fact(obj: object, where: str) -> Fact:
    if not isinstance(obj, list) or not obj:
        raise EventError("a fact is a non-empty array [relation, arg, ...]", where)
    rel = obj[0]
    if not isinstance(rel, str) or not _RELATION_RE.match(rel):
        raise EventError(f"invalid relation name {rel!r}", f"{where}[0]")
    if rel in PROTECTED_RELATIONS:
        raise EventError(
            f"relation {rel!r} is maintained from entity events (use upsert/delete)", f"{where}[0]"
        )
    if rel in (ALLOW, DENY) and len(obj) != 4:
        raise EventError(f"{rel!r} facts have three arguments (principal, action, resource)", where)
    if len(obj) - 1 > MAX_FACT_ARITY:
        raise EventError(f"more than {MAX_FACT_ARITY} arguments", where)
    args = tuple(parse_scalar(a, f"{where}[{i}]", EventError) for i, a in enumerate(obj[1:], 1))
    return rel, args


def _cedar_check(
    entities: list[Entity], schema: cedarpy.Schema | None, wheres: dict[EntityRef, str]
) -> None:
    """Let Cedar parse the entities (extension values, schema conformance); locate failures."""
    try:
        cedarpy.Entities.from_json_str(_json(entities), schema)
        return
    except ValueError:
        pass
    for entity in entities:
        try:
            cedarpy.Entities.from_json_str(_json([entity]), schema)
        except ValueError as exc:
            what = "does not conform to the schema" if schema is not None else "is invalid"
            raise EventError(
                f"entity {entity.uid} {what}: Cedar says {exc}", wheres[entity.uid]
            ) from None
    raise EventError("Cedar rejects the batch's entities together", "events")


def _json(entities: list[Entity]) -> str:
    parts = []
    for e in entities:
        uid = f'{{"type":{_q(e.uid.type)},"id":{_q(e.uid.id)}}}'
        parents = ",".join(f'{{"type":{_q(p.type)},"id":{_q(p.id)}}}' for p in e.parents)
        parts.append(f'{{"uid":{uid},{e.body},"parents":[{parents}]}}')
    return "[" + ",".join(parts) + "]"


def _q(s: str) -> str:
    return orjson.dumps(s).decode()
