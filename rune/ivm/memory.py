"""Approximate memory accounting of a materialization (for benchmarks and ``Engine.stats``).

Sizes come from ``sys.getsizeof`` of the containers and of each distinct row object, so they
include the hash tables of sets, dicts and indexes but count a row shared by several
containers once. Small integers below 257 are shared by CPython and are not counted.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rune.ivm.evaluate import Materialization
    from rune.ivm.values import Dictionary

__all__ = ["measure"]


def measure(mat: Materialization, dictionary: Dictionary) -> dict[str, int]:
    getsize = sys.getsizeof
    tuples = 0
    index_entries = 0
    row_bytes = 0
    container_bytes = 0
    for rel in mat.relations.values():
        tuples += len(rel.rows)
        container_bytes += getsize(rel.rows)
        for row in rel.rows:
            row_bytes += getsize(row)
        for idx in rel.indexes.values():
            container_bytes += getsize(idx.map)
            for group in idx.map.values():
                index_entries += len(group)
                container_bytes += getsize(group)
    dictionary_bytes = getsize(dictionary.values) + getsize(dictionary._ids)
    for v in dictionary.values:
        dictionary_bytes += getsize(v)
    total = row_bytes + container_bytes
    return {
        "tuples": tuples,
        "index_entries": index_entries,
        "dictionary_values": len(dictionary),
        "row_bytes": row_bytes,
        "container_bytes": container_bytes,
        "dictionary_bytes": dictionary_bytes,
        "bytes": total + dictionary_bytes,
        "bytes_per_tuple": (total + dictionary_bytes) // tuples if tuples else 0,
    }
