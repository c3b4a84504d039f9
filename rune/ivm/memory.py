"""Approximate memory accounting of a materialization (for benchmarks and ``Engine.stats``).

Sizes come from ``sys.getsizeof`` of every object the engine keeps: the containers (sets,
dicts, index groups, including their hash tables and spare capacity), row tuples (relations of
arity 0 and 1), items that are tuples, packed multi-column keys, derivation counts, and the
dictionary (values, their ids, the id map, reference counts and free ids). Ids are the
dictionary's own int objects, shared by every row and index that holds them, so each is
counted once, with the dictionary. Small integers below 257 are shared by CPython and are not
counted. Dictionary figures: ``dictionary_values`` live values, ``dictionary_dead`` values no
fact holds any more and not reclaimed yet, ``dictionary_ids`` id slots, ``dictionary_free``
of them free for reuse.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rune.ivm.values import FREED

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
        tuples += len(rel)
        container_bytes += getsize(rel.counts)
        row_bytes += sum(map(getsize, rel.counts))
        if rel.primary is None:
            rows = rel.scan()
            container_bytes += getsize(rows)
            row_bytes += sum(map(getsize, rows))
        for idx in rel.indexes.values():
            container_bytes += getsize(idx.map)
            if len(idx.cols) > 1:  # packed keys are ints of their own
                row_bytes += sum(map(getsize, idx.map))
            for group in idx.map.values():
                index_entries += len(group)
                container_bytes += getsize(group)
                if idx.arity - len(idx.cols) > 1:  # items are tuples
                    row_bytes += sum(map(getsize, group))
    values = dictionary.values
    dictionary_bytes = getsize(values) + getsize(dictionary.id_map) + getsize(dictionary.refs)
    dictionary_bytes += getsize(dictionary.free) + getsize(dictionary.dead)
    dictionary_bytes += sum(getsize(v) for v in values if v is not FREED)
    dictionary_bytes += sum(getsize(i) for i in dictionary.id_map.values() if i > 256)
    total = row_bytes + container_bytes
    return {
        "tuples": tuples,
        "index_entries": index_entries,
        "dictionary_values": dictionary.live(),
        "dictionary_ids": len(values),
        "dictionary_free": len(dictionary.free),
        "dictionary_dead": len(dictionary) - dictionary.live(),
        "row_bytes": row_bytes,
        "container_bytes": container_bytes,
        "dictionary_bytes": dictionary_bytes,
        "bytes": total + dictionary_bytes,
        "bytes_per_tuple": (total + dictionary_bytes) // tuples if tuples else 0,
    }
