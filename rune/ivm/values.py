"""Values of the Datalog engine and their dictionary encoding.

A value is a ``str``, an ``int`` (64-bit signed, as Cedar's ``Long``), a ``bool`` or an
:class:`EntityRef`. Inside the engine every value is a small ``int`` id handed out by a
:class:`Dictionary`; joins and indexes only ever see ids.

Pitfall: Python treats ``True == 1``; the dictionary keeps them apart (distinct ids), but a
Python ``set`` of decoded tuples would merge ``("a", 1)`` and ``("a", True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, compress, repeat
from operator import is_, itemgetter
from typing import Any, Final, NamedTuple

from rune.ivm.errors import InvalidValueError

__all__ = ["MAX_STRING_BYTES", "Dictionary", "EntityRef", "Value", "check_value"]

MAX_STRING_BYTES: Final = 64 * 1024
"""Longest string (and entity type or id) accepted, in characters."""

INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1

MAX_IDS: Final = 2**32
"""Ids must fit in 32 bits: index keys pack several ids into one int (``store.pack``)."""


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


class Dictionary:
    """Two-way map between values and dense integer ids. Ids are never reused.

    Strings and entity references are keys as themselves; integers and booleans are keyed
    as ``(int, n)`` / ``(bool, b)`` so that ``True`` and ``1`` get different ids. That makes
    the common row (strings and entities only) encodable with one C-level ``map``.
    """

    __slots__ = ("_ids", "values")

    def __init__(self) -> None:
        self._ids: dict[object, int] = {}
        self.values: list[Value] = []

    def __len__(self) -> int:
        return len(self.values)

    @staticmethod
    def _key(value: Value) -> object:
        kind = type(value)
        if kind is bool or kind is int or isinstance(value, int):
            return (bool if isinstance(value, bool) else int, value)
        return value

    def encode(self, value: Value) -> int:
        """Id of ``value``, assigning a new one if needed. ``value`` must be checked already."""
        key = self._key(value)
        ident = self._ids.get(key)
        if ident is None:
            ident = len(self.values)
            if ident >= MAX_IDS:
                raise InvalidValueError(f"more than {MAX_IDS} distinct values")
            self._ids[key] = ident
            self.values.append(value)
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
        self, rows: Sequence[Sequence[object]], arity: int, lookup_only: bool = False
    ) -> set[tuple[int, ...]] | None:
        """Encoded rows of ``rows`` (tuples or lists of ``arity`` values), or ``None``.

        The bulk path: every step is one C-level pass over all rows or all values (types,
        lengths, dictionary lookups, tuple building), and only values never seen before are
        checked and assigned ids. ``None`` means "not this fast path" (a row that is not a
        tuple or list, a wrong length, a value that is not a ``str``/``EntityRef``, or with
        ``lookup_only`` a value never seen): the caller then goes row by row, which also
        produces the precise error. With ``lookup_only`` nothing is assigned.
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
            fresh: list[Any] = list(dict.fromkeys(compress(flat, map(is_, ids, repeat(None)))))
            if not self._valid_new(fresh):
                return None
            start = len(self.values)
            if start + len(fresh) > MAX_IDS:
                return None
            self.values.extend(fresh)
            self._ids.update(zip(fresh, range(start, start + len(fresh)), strict=True))
            ids = list(map(ids_get, flat))
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
        parts = list(chain.from_iterable(entities))
        return (
            {*map(type, parts)} <= {str}
            and max(map(len, parts)) <= MAX_STRING_BYTES
            and "" not in map(_TYPE_OF, entities)
        )

    def lookup(self, value: Value) -> int | None:
        """Id of ``value`` or ``None`` when it was never encoded (so no fact can hold it)."""
        return self._ids.get(self._key(value))

    def decode(self, ident: int) -> Value:
        return self.values[ident]


_ROW_TYPES: Final = frozenset({tuple, list})
_KEY_TYPES: Final = frozenset({str, EntityRef})
"""Values that are dictionary keys as themselves (ints and bools are keyed by type)."""
_TYPE_OF: Final = itemgetter(0)
