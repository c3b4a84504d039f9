"""Indexes of encoded rows (differential dataflow's *arrangements*): key -> group of items.

An :class:`Index` holds all rows of one relation grouped by the ids of some columns. It does
not store row tuples: ``map[key]`` is the group of *items* of the rows with that key, an item
being what is left of a row without the key columns (the id itself when one column is left,
else a tuple of the remaining ids in column order). A key is the id of the one key column, or
the ids of several key columns packed into one int (:func:`pack`: 32 bits each; the
dictionary never hands out more ids). A group of one item is a 1-tuple, made when its key
appears and dropped when it goes (a second item makes it a list): the cyclic GC stops
tracking a tuple of ints the first time it looks at it, so the most common groups (one folder
per document, one parent per folder, one role per subject and folder) cost no full collection
anything and are 16 bytes smaller than a list. Larger groups are lists while small (8 bytes
per item; a membership test or removal scans at most :data:`GROUP_LIMIT` items) and sets
beyond (constant time). Both change in place: replacing immutable groups on every change
filled the GC's young generation with objects its allocation count never saw (one freed for
each one made), so a young collection would now and then traverse thousands of them inside a
single update (2-17 ms). Ids are the dictionary's own int objects, so an item costs one
pointer.

The functions that read and change the groups are generated once per index shape (arity, key
columns) through :func:`rune.ivm.codegen.define`: :class:`_Ops`, and :func:`builder` for bulk
builds. Plans compute keys and items as :func:`key_code` and :func:`item_code` write them.
Relations and their storage are :mod:`rune.ivm.store`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from functools import cache
from typing import Any

from rune.ivm.codegen import define

__all__ = [
    "EMPTY",
    "GROUP_LIMIT",
    "KEY_BITS",
    "KEY_MASK",
    "GroupMap",
    "Index",
    "Row",
    "builder",
    "item_code",
    "item_function",
    "key_code",
    "pack",
    "singleton_or_list",
    "unpack",
]

Row = tuple[int, ...]
EMPTY: tuple[Any, ...] = ()

KEY_BITS = 32
"""Bits per id in a packed key (ids are below ``2**32``, see ``values.MAX_IDS``)."""
KEY_MASK = (1 << KEY_BITS) - 1

GROUP_LIMIT = 64
"""Index groups of up to this many items are lists (1-tuples for one item; membership and
removal scan at most this many), larger ones sets (constant-time membership, insertion and
removal)."""


def key_code(parts: list[str]) -> str:
    """Source of the key of an index from the source of its key columns' ids."""
    if len(parts) == 1:
        return parts[0]
    n = len(parts)
    shifted = [f"{p} << {KEY_BITS * (n - 1 - j)}" for j, p in enumerate(parts[:-1])]
    return "(" + " | ".join([*shifted, parts[-1]]) + ")"


def item_code(parts: list[str]) -> str:
    """Source of an item (what a group holds) from the source of the non-key columns' ids."""
    if len(parts) == 1:
        return parts[0]
    return "(" + "".join(f"{p}, " for p in parts) + ")"


def pack(ids: Iterable[int]) -> int:
    """The packed key of several ids (what :func:`key_code` computes)."""
    key = 0
    for i in ids:
        key = key << KEY_BITS | i
    return key


def unpack(key: int, n: int) -> tuple[int, ...]:
    """The ``n`` ids of a key (``n == 1``: the key itself)."""
    if n == 1:
        return (key,)
    return tuple((key >> (KEY_BITS * (n - 1 - j))) & KEY_MASK for j in range(n))


class _Ops:
    """Functions of one index shape (arity, key columns), compiled once per shape."""

    __slots__ = (
        "absent",
        "add",
        "add_new",
        "contains",
        "full",
        "item",
        "key",
        "present",
        "remove",
        "rows",
    )

    def __init__(self, arity: int, cols: tuple[int, ...], limit: int) -> None:
        rest = [p for p in range(arity) if p not in cols]
        key = key_code([f"r[{c}]" for c in cols])
        item = item_code([f"r[{p}]" for p in rest])
        n = len(cols)
        at: dict[int, str] = {}
        for j, c in enumerate(cols):
            at[c] = "k" if n == 1 else f"(k >> {KEY_BITS * (n - 1 - j)} & {KEY_MASK})"
        for j, p in enumerate(rest):
            at[p] = "x" if len(rest) == 1 else f"x[{j}]"
        full = "(" + "".join(f"{at[p]}, " for p in range(arity)) + ")"
        src = f"""
def key(r):
    return {key}

def item(r):
    return {item}

def full(k, x):
    return {full}

def rows(m):
    for k, g in m.items():
        for x in g:
            yield {full}

def contains(m, r):
    g = m.get({key})
    return g is not None and {item} in g

def present(m, rows):
    get = m.get
    return {{r for r in rows if {item} in get({key}, ())}}

def absent(m, rows):
    get = m.get
    return {{r for r in rows if {item} not in get({key}, ())}}

def add(m, rows):
    get = m.get
    for r in rows:
        k = {key}
        g = get(k)
        if g is None:
            m[k] = ({item},)
        elif g.__class__ is list:
            g.append({item})
            if len(g) > {limit}:
                m[k] = set(g)
        elif g.__class__ is tuple:
            m[k] = [*g, {item}]
        else:
            g.add({item})

def add_new(m, rows):
    get = m.get
    new = []
    for r in rows:
        k = {key}
        x = {item}
        g = get(k)
        if g is None:
            m[k] = (x,)
        elif x in g:
            continue
        elif g.__class__ is list:
            g.append(x)
            if len(g) > {limit}:
                m[k] = set(g)
        elif g.__class__ is tuple:
            m[k] = [*g, x]
        else:
            g.add(x)
        new.append(r)
    return new

def remove(m, rows):
    for r in rows:
        k = {key}
        g = m[k]
        if g.__class__ is tuple:
            del m[k]
            continue
        g.remove({item})
        if not g:
            del m[k]
"""
        namespace: dict[str, Any] = {}
        define(src, "key", f"index {arity}:{cols}", namespace)
        self.key: Callable[[Row], Any] = namespace["key"]
        self.item: Callable[[Row], Any] = namespace["item"]
        self.full: Callable[[Any, Any], Row] = namespace["full"]
        self.rows: Callable[[dict[Any, Any]], Iterator[Row]] = namespace["rows"]
        self.contains: Callable[[dict[Any, Any], Row], bool] = namespace["contains"]
        self.present: Callable[[dict[Any, Any], Iterable[Row]], set[Row]] = namespace["present"]
        self.absent: Callable[[dict[Any, Any], Iterable[Row]], set[Row]] = namespace["absent"]
        self.add: Callable[[dict[Any, Any], Iterable[Row]], None] = namespace["add"]
        self.add_new: Callable[[dict[Any, Any], Iterable[Row]], list[Row]] = namespace["add_new"]
        self.remove: Callable[[dict[Any, Any], Iterable[Row]], None] = namespace["remove"]


class GroupMap(dict[Any, Any]):
    """The dict of an index: key -> group.

    A plain ``dict`` that the cyclic GC finds holding only untracked objects stops being
    tracked, and is tracked again, as a *young* object, when a tracked one is stored: the next
    young collection then traverses the whole index (tens of milliseconds for a large one, in
    the middle of a single update). The GC never untracks an instance of a subclass, so an
    index stays in the old generation whatever its groups are.
    """

    __slots__ = ()


@cache
def _ops(arity: int, cols: tuple[int, ...], limit: int) -> _Ops:
    return _Ops(arity, cols, limit)


def singleton_or_list(items: Iterable[Any]) -> tuple[Any] | list[Any]:
    """A small group: a 1-tuple for one item (see the module docstring), else a list."""
    group = list(items)
    return (group[0],) if len(group) == 1 else group


def item_function(arity: int, cols: tuple[int, ...]) -> Callable[[Row], Any]:
    """The item (see the module docstring) of a full row, for an index on ``cols``."""
    return _ops(arity, cols, 1).item


@cache
def builder(
    arity: int, shapes: tuple[tuple[int, ...], ...], limit: int
) -> Callable[[list[dict[Any, Any]], Iterable[Row]], None]:
    """``build(maps, rows)``: fill the empty maps of indexes on ``shapes`` in one pass.

    The rows are grouped by each index's key into lists (one loop, rows unpacked once), which
    become the groups (sets beyond ``limit`` items).
    """
    cells = [f"c{p}" for p in range(arity)]
    lines = [f"    by{i} = defaultdict(list)" for i in range(len(shapes))]
    lines.append(f"    for {', '.join(cells)}, in rows:")
    for i, cols in enumerate(shapes):
        rest = [f"c{p}" for p in range(arity) if p not in cols]
        key = key_code([f"c{c}" for c in cols])
        lines.append(f"        by{i}[{key}].append({item_code(rest)})")
    for i in range(len(shapes)):
        lines.append(f"    m = maps[{i}]")
        lines.append(f"    m.update(by{i})")
        lines.append(f"    for k, g in by{i}.items():")
        lines.append("        if len(g) == 1:")
        lines.append("            m[k] = (g[0],)")
        lines.append(f"        elif len(g) > {limit}:")
        lines.append("            m[k] = set(g)")
    src = "def build(maps, rows):\n" + "\n".join(lines) + "\n"
    namespace: dict[str, Any] = {"defaultdict": defaultdict}
    build: Callable[[list[dict[Any, Any]], Iterable[Row]], None] = define(
        src, "build", f"build {arity}:{shapes}", namespace
    )
    return build


class Index:
    """All rows of one relation grouped by the ids of ``cols`` (see the module docstring).

    ``map[key]`` is a 1-tuple for one item, a list of items while the group has at most
    ``limit`` of them, else a set (which stays a set when the group shrinks).
    """

    __slots__ = ("arity", "cols", "key", "limit", "map", "ops")

    def __init__(self, arity: int, cols: tuple[int, ...], rows: Iterable[Row], limit: int) -> None:
        if not 0 < len(cols) < arity:
            raise ValueError(f"an index needs some but not all of {arity} columns, got {cols}")
        self.arity = arity
        self.cols = cols
        self.limit = limit
        self.ops = _ops(arity, cols, limit)
        self.key = self.ops.key
        self.map: dict[Any, list[Any] | set[Any]] = GroupMap()
        self.ops.add(self.map, rows)

    def full_rows(self, key: Any) -> list[Row]:
        """The full rows of the group of ``key`` (none if absent)."""
        full = self.ops.full
        return [full(key, x) for x in self.map.get(key, EMPTY)]
