"""Values of the Datalog engine and their dictionary encoding.

A value is a ``str``, an ``int`` (64-bit signed, as Cedar's ``Long``), a ``bool`` or an
:class:`EntityRef`. Inside the engine every value is a small ``int`` id handed out by a
:class:`Dictionary`; joins and indexes only ever see ids.

Pitfall: Python treats ``True == 1``; the dictionary keeps them apart (distinct ids), but a
Python ``set`` of decoded tuples would merge ``("a", 1)`` and ``("a", True)``.
"""

from __future__ import annotations

import weakref
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from itertools import chain, compress, islice, repeat, takewhile
from operator import is_, itemgetter, not_
from typing import Any, Final, NamedTuple

from rune.ivm.errors import InvalidValueError

__all__ = ["MAX_STRING_BYTES", "Dictionary", "EntityRef", "Era", "Value", "check_value"]

MAX_STRING_BYTES: Final = 64 * 1024
"""Longest string (and entity type or id) accepted, in characters."""

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

MAX_IDS: Final = 2**32
"""Ids must fit in 32 bits: index keys pack several ids into one int (``index.pack``)."""


class EntityRef(NamedTuple):
    """A Cedar entity reference ``Type::"id"`` (``type`` may be namespaced, ``App::User``).

    A named tuple, so hashing and equality run in C (the engine hashes values at every
    encode). Pitfall: it compares equal to the plain tuple ``(type, id)``; plain tuples are
    not engine values, so the engine never confuses the two.
    """

    type: str
    id: str

    def __str__(self) -> str:
        return f"{self.type}::{_quote(self.id)}"

    def __repr__(self) -> str:
        return f"EntityRef(type={self.type!r}, id={self.id!r})"

    def to_json(self) -> dict[str, str]:
        """Contract v1 form: ``{"type": T, "id": I}``."""
        return {"type": self.type, "id": self.id}


Value = str | int | bool | EntityRef


def _quote(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)


def render_value(value: Value) -> str:
    """Datalog source form of a value: ``"s"``, ``42``, ``true``, ``User::"alice"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    return str(value)


def check_value(value: object) -> Value:
    """Return ``value`` if the engine can store it, else raise :class:`InvalidValueError`."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise InvalidValueError(f"integer {value} is outside the 64-bit range")
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_BYTES:
            raise InvalidValueError(
                f"string of {len(value)} characters exceeds the limit of {MAX_STRING_BYTES}"
            )
        return value
    if isinstance(value, EntityRef):
        if not isinstance(value.type, str) or not isinstance(value.id, str):
            raise InvalidValueError(f"entity reference with non-string parts: {value!r}")
        if len(value.type) > MAX_STRING_BYTES or len(value.id) > MAX_STRING_BYTES:
            raise InvalidValueError("entity reference exceeds the string size limit")
        if not value.type:
            raise InvalidValueError("entity reference with an empty type")
        return value
    raise InvalidValueError(
        f"unsupported value of type {type(value).__name__}: expected str, int, bool or EntityRef"
    )


FREED: Final[Any] = None
"""What a free id's slot of :attr:`Dictionary.values` holds."""

ERA_KEEP: Final = 65_536
"""Freed values the graveyards of ended eras may keep before an era keeps a copy instead."""

COMPACT_MIN: Final = 4096
"""Below this many entries, maps emptied by retirements are left to shrink by themselves."""


class Era:
    """The dictionary's ids as they were between two reclamations, for decoding changes.

    A change holds the era current when it was made. While that era is current, its ids
    decode through the dictionary's live ``values``. :meth:`Dictionary.reclaim` ends the era:
    the values it frees go into the era's ``graveyard`` (or, to bound what old eras keep,
    a copy of all the values goes into its ``base``) and ``next`` is the new era. An id of
    an older era decodes to the first graveyard holding it along the ``next`` chain (ids
    freed once, then reused and freed again, are in the first one with the value the
    change saw), else to the first ``base``, else to the live values: ids not freed since
    never changed value. Eras no change holds are dropped as any object.
    """

    __slots__ = ("__weakref__", "base", "graveyard", "next", "values")

    def __init__(self, values: list[Value]) -> None:
        self.values = values
        self.graveyard: dict[int, Value] = {}
        self.base: list[Value] | None = None
        self.next: Era | None = None

    def decoder(self) -> Callable[[int], Value]:
        """``fn(id) -> value`` as the ids stood in this era."""
        if self.next is None:
            return self.values.__getitem__
        merged: dict[int, Value] = {}
        era: Era | None = self
        fallback = self.values
        while era is not None:
            for ident, value in era.graveyard.items():
                merged.setdefault(ident, value)
            if era.base is not None:
                fallback = era.base
                break
            era = era.next
        get = merged.get
        at = fallback.__getitem__
        missing = object()

        def decode(ident: int) -> Value:
            value = get(ident, missing)
            return at(ident) if value is missing else value  # type: ignore[return-value]

        return decode


class Dictionary:
    """Two-way map between values and dense integer ids, with reference counts.

    Strings and entity references are keys as themselves; integers and booleans are keyed
    as ``(int, n)`` / ``(bool, b)`` so that ``True`` and ``1`` get different ids. That makes
    the common row (strings and entities only) encodable with one C-level ``map``.

    Reclamation: ``refs[id]`` counts the asserted facts holding the id, plus one per program
    pinning it as a constant (the engine maintains both: :meth:`release`, :meth:`pin`,
    :meth:`unpin`, and inline increments). The rules invent no values, so an id whose count
    is zero once an update completes is held by no stored tuple. Such ids are listed in
    :attr:`dead` (a value coming back before they are reclaimed keeps its id) and freed in
    batches by :meth:`reclaim`: their slots are reused (last freed first) by later encodings.
    Changes returned earlier still decode them through their :class:`Era`. Ids thus stay
    below the number of values live at once (and :data:`MAX_IDS`), and the containers
    shrink with the live values. Pitfall: ``values`` and ``_ids`` are changed in place, never
    replaced (compiled plans and checks hold them).
    """

    __slots__ = (
        "_eras",
        "_high",
        "_ids",
        "_kept",
        "assigned",
        "dead",
        "era",
        "free",
        "refs",
        "values",
    )

    def __init__(self) -> None:
        self._ids: dict[object, int] = {}
        self.values: list[Value] = []
        self.refs: list[int] = []
        # reusable ids (slots hold FREED), the next one last; an array, so that no int object
        # outlives its id (scattered small objects keep the allocator's arenas from the OS)
        self.free = array("L")
        self.dead: list[int] = []  # ids whose count dropped to zero (some may be back since)
        self.assigned: list[int] = []  # ids given out in this operation, for rollback()
        self._high = 0  # most live values seen since the map was last compacted
        self.era = Era(self.values)
        self._eras: list[weakref.ref[Era]] = []  # ended eras that may still be held
        self._kept = 0  # values their graveyards hold

    def __len__(self) -> int:
        """Number of values with an id (including dead ones not reclaimed yet)."""
        return len(self._ids)

    @staticmethod
    def _key(value: Value) -> object:
        kind = type(value)
        if kind is bool or kind is int or isinstance(value, int):
            return (bool if isinstance(value, bool) else int, value)
        return value

    def _new_id(self, value: Value) -> int:
        free = self.free
        if free:
            ident = free.pop()
            self.values[ident] = value
        else:
            ident = len(self.values)
            if ident >= MAX_IDS:
                raise InvalidValueError(f"more than {MAX_IDS} distinct values")
            self.values.append(value)
            self.refs.append(0)
        self.assigned.append(ident)
        return ident

    def encode(self, value: Value) -> int:
        """Id of ``value``, assigning a new one if needed. ``value`` must be checked already.

        A new id has no references: the caller acquires or pins it, or it is rolled back.
        """
        key = self._key(value)
        ident = self._ids.get(key)
        if ident is None:
            ident = self._ids[key] = self._new_id(value)
        return ident

    def encode_row(self, row: tuple[object, ...] | list[object]) -> tuple[int, ...]:
        """Ids of a row of unchecked values, checking only values not seen before.

        Raises :class:`InvalidValueError` (``message`` prefixed by ``[column]``) on a bad value.
        """
        try:
            ids = tuple(map(self._ids.get, row))
        except TypeError:  # an unhashable value: the checks below name it
            ids = (None,)
        # Fast path: every value a known string or entity (ints and bools never match a key
        # as themselves; a plain tuple could equal an entity key, so it is excluded).
        if None not in ids and tuple not in map(type, row):
            return ids  # type: ignore[return-value]
        out = []
        for j, value in enumerate(row):
            known = ids[j] if len(ids) > j and type(value) is not tuple else None
            if known is not None:
                out.append(known)
                continue
            try:
                out.append(self.encode(check_value(value)))
            except InvalidValueError as exc:
                raise InvalidValueError(f"[{j}]: {exc.message}") from None
        return tuple(out)

    def encode_many(
        self,
        rows: Sequence[Sequence[object]],
        arity: int,
        lookup_only: bool = False,
        flat_ids: list[list[int]] | None = None,
    ) -> set[tuple[int, ...]] | None:
        """Encoded rows of ``rows`` (tuples or lists of ``arity`` values), or ``None``.

        The bulk path: every step is one C-level pass over all rows or all values (types,
        lengths, dictionary lookups, tuple building), and only values never seen before are
        checked and assigned ids. ``None`` means "not this fast path" (a row that is not a
        tuple or list, a wrong length, a value that is not a ``str``/``EntityRef``, or with
        ``lookup_only`` a value never seen): the caller then goes row by row, which also
        produces the precise error. With ``lookup_only`` nothing is assigned. ``flat_ids``
        receives the ids of all the values, row after row (input order: counting references
        over it reads memory in order, unlike the set of rows).
        """
        if not rows:
            return set()
        if not {*map(type, rows)} <= _ROW_TYPES or {*map(len, rows)} != {arity}:
            return None
        if arity == 0:
            return {()}
        flat: list[object] = list(chain.from_iterable(rows))
        if not {*map(type, flat)} <= _KEY_TYPES:
            return None
        ids_get = self._ids.get
        ids = list(map(ids_get, flat))
        if None in ids:
            if lookup_only:
                return None
            missing = list(compress(flat, map(is_, ids, repeat(None))))
            fresh: list[Any] = list(dict.fromkeys(missing))
            if not self._valid_new(fresh):
                return None
            free = self.free
            values = self.values
            reuse = min(len(fresh), len(free))
            start = len(values)
            if start + len(fresh) - reuse > MAX_IDS:
                return None
            new: list[int] = []
            if reuse:
                new = free[-reuse:].tolist()
                del free[-reuse:]
                for ident, value in zip(new, fresh, strict=False):
                    values[ident] = value
            new.extend(range(start, start + len(fresh) - reuse))
            values.extend(fresh[reuse:])
            self.refs.extend(repeat(0, len(fresh) - reuse))
            self._ids.update(zip(fresh, new, strict=True))
            self.assigned.extend(new)
            # the ids of the values that had none: when each came once (a column of new
            # documents, say) they are the new ids in order, else looked up (only those)
            filled: list[int | None] = (
                list(new) if len(fresh) == len(missing) else list(map(ids_get, missing))
            )
            if len(missing) == len(ids):
                ids = filled
            else:
                it = iter(filled)
                ids = [next(it) if i is None else i for i in ids]
        if flat_ids is not None:
            flat_ids.append(ids)  # type: ignore[arg-type]
        return set(zip(*[iter(ids)] * arity, strict=True))

    @staticmethod
    def _valid_new(fresh: list[Any]) -> bool:
        """Whether new ``str``/``EntityRef`` values all pass :func:`check_value`."""
        strings = [v for v in fresh if type(v) is str]
        if strings and max(map(len, strings)) > MAX_STRING_BYTES:
            return False
        if len(strings) == len(fresh):
            return True
        entities = [v for v in fresh if type(v) is EntityRef]
        return (
            {*map(type, chain.from_iterable(entities))} <= {str}
            and max(map(len, chain.from_iterable(entities))) <= MAX_STRING_BYTES
            and "" not in map(_TYPE_OF, entities)
        )

    def frozen(self) -> tuple[tuple[Value, ...], array[int]]:
        """The values (a tuple, slot per id) and reference counts (an array), copied.

        Two C-level copies. A tuple of immutable objects is left alone by the garbage
        collector once it has looked at it; an array is never looked at.
        """
        return tuple(self.values), array("Q", self.refs)

    @classmethod
    def restore(
        cls, values: Sequence[Value], refs: array[int], unpin: Iterable[int]
    ) -> tuple[Dictionary, list[int]]:
        """A dictionary of :meth:`frozen` state, minus the pins ``unpin``: the values still
        counted keep their ids, the others are freed. Also returns id -> int object (new
        ones, the canonical objects of this dictionary: rows should use them)."""
        counts = refs.tolist()
        for ident in unpin:
            counts[ident] -= 1
        canon = list(range(len(counts)))
        out = cls()
        out.values.extend(values)
        out.refs.extend(counts)
        live = list(compress(canon, counts))
        gone = list(compress(canon, map(not_, counts)))
        slots = out.values
        for ident in gone:
            slots[ident] = FREED
        live_values = list(map(slots.__getitem__, live))
        keyed = list(map(_KEY_TYPES.__contains__, map(type, live_values)))
        pairs = zip(compress(live_values, keyed), compress(live, keyed), strict=True)
        for part in iter(lambda: list(islice(pairs, 65_536)), []):
            out._ids.update(part)  # by parts: other threads run between them
        others = map(not_, keyed)
        for value, ident in compress(zip(live_values, live, strict=True), others):
            out._ids[cls._key(value)] = ident
        while gone and gone[-1] == len(slots) - 1:  # free ids at the end are cut off
            gone.pop()
            slots.pop()
            out.refs.pop()
        out.free.extend(reversed(gone))  # lowest last: reused first
        return out, canon

    def lookup(self, value: Value) -> int | None:
        """Id of ``value`` or ``None`` when no stored tuple can hold it (never seen, or dead)."""
        return self._ids.get(self._key(value))

    @property
    def id_of(self) -> Callable[[object], int | None]:
        """``id_of(value)``: :meth:`lookup` without the keying, for hot loops (the map's bound
        ``get``, valid for the dictionary's lifetime: the map is changed in place).

        Only strings and entity references are keys as themselves: ints and bools get
        ``None`` (they are keyed by type; use :meth:`lookup`), and a plain tuple may match a
        key that is not its own (an entity's, an int's ``(int, n)``). Callers check the
        values' types, as :meth:`encode_row` does.
        """
        return self._ids.get

    @property
    def id_map(self) -> Mapping[object, int]:
        """The value -> id map itself, read-only (memory accounting: ``rune.ivm.memory``).
        Keys as :meth:`lookup` makes them; changed in place by the dictionary."""
        return self._ids

    def decode(self, ident: int) -> Value:
        return self.values[ident]

    # -- reference counts and reclamation ---------------------------------------------------

    def rollback(self) -> None:
        """Free the ids given out since the log was last cleared that nothing references.

        The engine keeps :attr:`assigned` empty between operations: an operation that
        encodes values clears it once they are referenced, or rolls them back.
        """
        refs, values, ids, key, free = self.refs, self.values, self._ids, self._key, self.free
        for ident in self.assigned:
            if not refs[ident] and values[ident] is not FREED:
                del ids[key(values[ident])]
                values[ident] = FREED
                free.append(ident)
        self.assigned.clear()

    def acquire(self, groups: Iterable[Iterable[tuple[int, ...]]]) -> None:
        """Count one reference per id occurrence in the rows of ``groups`` (new facts).

        (``Engine.update`` does the same inline: a call costs more than a fact.)
        """
        refs = self.refs
        for rows in groups:
            for row in rows:
                for ident in row:
                    refs[ident] += 1

    def release(self, groups: Iterable[Iterable[tuple[int, ...]]]) -> None:
        """Drop one reference per id occurrence (facts gone); ids left with none are dead."""
        refs = self.refs
        dead = self.dead
        for rows in groups:
            for row in rows:
                for ident in row:
                    n = refs[ident] - 1
                    refs[ident] = n
                    if not n:
                        dead.append(ident)

    def pin(self, ids: Iterable[int]) -> None:
        """One reference per id (constants of a program)."""
        refs = self.refs
        for ident in ids:
            refs[ident] += 1

    def unpin(self, ids: Iterable[int]) -> None:
        """Undo :meth:`pin`."""
        self.release([[tuple(ids)]])

    def live(self) -> int:
        """Number of live values (dead ones not reclaimed yet excluded)."""
        refs, values = self.refs, self.values
        gone = {i for i in self.dead if not refs[i] and values[i] is not FREED}
        return len(self._ids) - len(gone)

    def reclaim(self) -> None:
        """Free the dead ids and end the current :class:`Era`.

        The era keeps the freed values (its graveyard) for the changes holding it; once
        the graveyards of eras still held (by changes not dropped since) would keep more
        than :data:`ERA_KEEP` values and a quarter of the live ones, the ending era keeps a
        copy of all the values instead (one C-level list copy), which ends the chains of the
        eras before it.

        Maps and lists shrink in place once few of their entries are left: the value -> id map
        when it holds less than a quarter of the most it held (one pass over the live ids), the
        id-indexed lists by cutting off the free slots at their end once they are at least a
        quarter of the free ids (one C-level pass over those). Amortized, a constant cost per
        freed id.
        """
        refs, values, ids, key, free = self.refs, self.values, self._ids, self._key, self.free
        if len(ids) > self._high:
            self._high = len(ids)
        freed = [
            i for i in dict.fromkeys(self.dead) if not refs[i] and values[i] is not FREED
        ]  # an id may be listed twice (back, then dead again)
        self.dead.clear()
        era = self.era
        self._eras = [r for r in self._eras if r() is not None]
        self._kept = sum(len(e.graveyard) for r in self._eras if (e := r()) is not None)
        if self._kept and self._kept + len(freed) > max(ERA_KEEP, len(ids) // 4):
            era.base = values.copy()
            self._eras.clear()
            self._kept = 0
        else:
            era.graveyard = dict(zip(freed, map(values.__getitem__, freed), strict=True))
            self._eras.append(weakref.ref(era))
            self._kept += len(freed)
        era.next = self.era = Era(values)
        for ident in freed:
            del ids[key(values[ident])]
            values[ident] = FREED
        free.extend(freed)
        if len(ids) * 4 < self._high and self._high >= COMPACT_MIN:
            live = ids.copy()  # a dict with many deleted entries copies into a compact one
            ids.clear()
            ids.update(live)
            self._high = len(ids)
        if values and values[-1] is FREED:
            # free slots at the end: cut them off once they are a good part of the free ids
            # (counting them reads only them; dropping them from ``free`` reads it all)
            cut = len(list(takewhile(partial(is_, FREED), reversed(values))))
            if cut * 4 >= len(free) and cut >= COMPACT_MIN:
                end = len(values) - cut
                free[:] = array("L", filter(end.__gt__, free))
                del values[end:]
                del refs[end:]


_ROW_TYPES: Final = frozenset({tuple, list})
_KEY_TYPES: Final = frozenset({str, EntityRef})
"""Values that are dictionary keys as themselves (ints and bools are keyed by type)."""
_TYPE_OF: Final = itemgetter(0)
