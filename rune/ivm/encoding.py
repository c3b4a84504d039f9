"""Validation and encoding of the Python values given to the engine into rows of ids.

``Engine.update`` encodes each side of a batch with :func:`encode_facts` (deletions only look
ids up: a value never seen cannot be in a stored row); ``contains``, ``lookup`` encode their
arguments with :func:`encode_pattern`. Errors name the place (``insert['edge'][3][1]: ...``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from rune.ivm.analysis import MAX_ARITY
from rune.ivm.errors import ArityError, InvalidValueError
from rune.ivm.index import Row
from rune.ivm.values import Dictionary, EntityRef, Value, check_value

__all__ = ["Facts", "check_new_arity", "encode_facts", "encode_pattern", "lookup_row"]

_RELATION_NAME = re.compile(r"[a-z_][A-Za-z0-9_]*\Z")

Facts = Mapping[str, Iterable[Sequence[Value]]]
"""A batch side as ``update`` takes it: relation name -> rows of values."""

_KEY_TYPES = frozenset({str, EntityRef})

_FEW_ROWS = 8
"""Batches of fewer rows per relation are encoded row by row, larger ones in bulk."""


def check_new_arity(name: str, arity: int, where: str) -> None:
    """A relation that updates introduce may have at most :data:`MAX_ARITY` columns."""
    if arity > MAX_ARITY:
        raise ArityError(
            f"{where}: relation {name} would have {arity} columns, more than the limit of "
            f"{MAX_ARITY}"
        )


# every update runs this loop: the checks of each kind of value are inlined, not delegated
def encode_facts(  # noqa: C901
    facts: Facts,
    verb: str,
    dictionary: Dictionary,
    arity_of: Callable[[str], int | None],
    storage_for: Callable[[str], str],
    arities: dict[str, int],
    lookup_only: bool,
    flats: dict[str, tuple[int, list[int]]] | None = None,
) -> dict[str, set[Row]]:
    """Validate and encode a batch side (``verb``: ``"insert"`` or ``"delete"``); keys are
    storage relations (``storage_for`` of the relation named).

    ``arity_of`` is the arity of a relation the program or earlier updates fixed (else
    ``None``); ``arities`` receives the arity of the relations this batch introduces. With
    ``lookup_only`` no id is assigned (rows holding a value never seen are left out: they
    cannot be stored). ``flats`` receives, for relations encoded in bulk, the number of rows
    given and the ids of their values in the order given.
    """
    if not isinstance(facts, Mapping):
        raise InvalidValueError(f"{verb}: expected a mapping of relation name to rows")
    out: dict[str, set[Row]] = {}
    ids_get = dictionary.id_of
    for name, rows in facts.items():
        if not isinstance(name, str) or not _RELATION_NAME.match(name):
            raise InvalidValueError(f"{verb}[{name!r}]: invalid relation name")
        arity = arity_of(name)
        if arity is None:
            arity = arities.get(name)
        if isinstance(rows, (str, bytes)) or not isinstance(rows, Iterable):
            raise InvalidValueError(f"{verb}[{name!r}]: expected an iterable of rows")
        rows = rows if type(rows) is list else list(rows)  # read an iterator only once
        fast = None
        flat: list[list[int]] | None = [] if flats is not None else None
        if len(rows) < _FEW_ROWS:
            pass  # row by row is cheaper than the set-up of the bulk path
        elif arity is None and isinstance(rows[0], (tuple, list)):
            check_new_arity(name, len(rows[0]), f"{verb}[{name!r}][0]")
            fast = dictionary.encode_many(rows, len(rows[0]), lookup_only, flat)
            if fast is not None:
                arities[name] = len(rows[0])
        elif arity is not None:
            fast = dictionary.encode_many(rows, arity, lookup_only, flat)
        if fast is not None:
            if fast:
                storage = storage_for(name)
                out[storage] = fast  # (a mapping names a relation once)
                if flats is not None and flat:
                    flats[storage] = (len(rows), flat[-1])
            continue
        encoded: set[Row] = set()
        where = f"{verb}[{name!r}]"
        for i, row in enumerate(rows):
            if lookup_only and type(row) in (tuple, list) and len(row) == arity:
                # a known str/entity passed the checks when it was first encoded
                try:
                    known = tuple(map(ids_get, row))
                except TypeError:  # unhashable: the general path names it
                    known = (None,)
                if None not in known and {*map(type, row)} <= _KEY_TYPES:
                    encoded.add(known)  # type: ignore[arg-type]
                    continue
            if not isinstance(row, (tuple, list)):
                raise InvalidValueError(
                    f"{where}[{i}]: expected a tuple of values, got {type(row).__name__}"
                )
            if arity is None:
                check_new_arity(name, len(row), f"{where}[{i}]")
                arity = arities[name] = len(row)
            elif len(row) != arity:
                raise ArityError(f"{where}[{i}]: relation {name} has arity {arity}, got {len(row)}")
            if lookup_only:
                row_ids = lookup_row(dictionary, row, f"{where}[{i}]")
                if row_ids is not None:  # else a value never seen: the row cannot be stored
                    encoded.add(row_ids)
            else:
                try:
                    encoded.add(dictionary.encode_row(row))
                except InvalidValueError as exc:
                    raise InvalidValueError(f"{where}[{i}]{exc.message}") from None
        if encoded:
            out.setdefault(storage_for(name), set()).update(encoded)
    return out


def lookup_row(dictionary: Dictionary, row: Sequence[object], where: str) -> Row | None:
    """Ids of a row of unchecked values; ``None`` if one was never stored (``where`` prefixes
    the message of an invalid value's error)."""
    ids: list[int] = []
    for j, value in enumerate(row):
        try:
            ident = dictionary.lookup(check_value(value))
        except InvalidValueError as exc:
            raise InvalidValueError(f"{where}[{j}]: {exc.message}") from None
        if ident is None:
            return None
        ids.append(ident)
    return tuple(ids)


def encode_pattern(
    dictionary: Dictionary, relation: str, arity: int, values: Sequence[Value | None]
) -> tuple[Row, tuple[int, ...]] | None:
    """Encode ``values`` (``None`` = unbound) for ``relation`` of ``arity``: the row (0 where
    unbound) and the bound columns; ``None`` if a value was never stored."""
    if not isinstance(values, (tuple, list)) or len(values) != arity:
        raise ArityError(f"relation {relation} has arity {arity}; got {values!r}")
    ids: list[int] = []
    cols: list[int] = []
    for i, value in enumerate(values):
        if value is None:
            ids.append(0)
            continue
        ident = dictionary.lookup(check_value(value))
        if ident is None:
            return None
        ids.append(ident)
        cols.append(i)
    return tuple(ids), tuple(cols)
