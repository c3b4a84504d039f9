"""Kafka's default partitioner for keyed records: ``murmur2(key) & 0x7fffffff`` modulo the
partition count, as the Java clients compute it (librdkafka's ``murmur2_random``, which RUNE's
producers are configured with). Ingest uses it to check that a keyed fact landed where any
producer using the default partitioner would put it (a key in two partitions of a compacted
topic has no defined order)."""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["default_partition", "murmur2"]

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of ``data`` (unsigned), bit for bit Kafka's ``Utils.murmur2``."""
    length = len(data)
    h = _SEED ^ length
    m, mask = _M, _MASK
    words = length >> 2
    if words:
        for k in struct.unpack_from(f"<{words}I", data):
            k = (k * m) & mask
            h = ((h * m) ^ (((k ^ (k >> 24)) * m) & mask)) & mask
    extra = length & 3
    if extra:
        tail = length & ~3
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def default_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record with ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
