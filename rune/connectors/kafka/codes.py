"""librdkafka's local error codes under public names.

librdkafka names the errors it raises itself (not the broker) with a leading underscore
(``KafkaError._PARTITION_EOF``); they are public API all the same. This module is the one
place that reads them, so the rest of RUNE never reaches for underscored names.
"""

from __future__ import annotations

from typing import Final

from confluent_kafka import KafkaError

__all__ = [
    "ALL_BROKERS_DOWN",
    "AUTHENTICATION",
    "FENCED",
    "PARTITION_EOF",
    "TRANSPORT",
    "UNKNOWN_TOPIC",
]

ALL_BROKERS_DOWN: Final[int] = KafkaError._ALL_BROKERS_DOWN
AUTHENTICATION: Final[int] = KafkaError._AUTHENTICATION
FENCED: Final[int] = KafkaError._FENCED
PARTITION_EOF: Final[int] = KafkaError._PARTITION_EOF
TRANSPORT: Final[int] = KafkaError._TRANSPORT
UNKNOWN_TOPIC: Final[int] = KafkaError._UNKNOWN_TOPIC
