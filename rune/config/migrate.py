"""Settings-file versions and the migration from each to the next.

- version 1 (RUNE 0.1, no ``version`` key): flat keys (``kafka = "HOST:PORT"``,
  ``group_id``, ``ingest_batch``, ``cache_entries``, ...) and a ``[topics]`` table.
- version 2: one table per concern (``[server]``, ``[cache]``, ``[datalog]``, ``[kafka]``,
  ``[topics]``, ``[stream]``, ``[logging]``), see :mod:`rune.config.settings`.

``migrate`` turns a parsed document of any known version into version 2 and says what it did;
it never guesses about unknown keys (they stay and fail validation, naming the key).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rune.config.errors import ConfigError
from rune.config.settings import CURRENT_VERSION

__all__ = ["migrate"]

_V1_MOVES: Final[dict[str, tuple[str, str]]] = {
    "kafka": ("kafka", "bootstrap"),
    "group_id": ("kafka", "group_id"),
    "client_id": ("kafka", "client_id"),
    "partitions": ("kafka", "partitions"),
    "isolation_level": ("kafka", "isolation_level"),
    "ingest_batch": ("stream", "ingest_batch"),
    "serve_batch": ("stream", "serve_batch"),
    "poll_timeout_s": ("stream", "poll_timeout_s"),
    "token_wait_s": ("stream", "token_wait_s"),
    "max_waiting": ("stream", "max_waiting"),
    "changefeed_relations": ("stream", "changefeed_relations"),
    "checkpoint_interval_s": ("stream", "checkpoint_interval_s"),
    "shutdown_timeout_s": ("stream", "shutdown_timeout_s"),
    "cache_entries": ("cache", "max_entries"),
}
_V2_ONLY: Final = frozenset({"server", "cache", "datalog", "stream", "logging", "embedded_log"})


def migrate(doc: Mapping[str, Any], where: str = "settings") -> tuple[dict[str, Any], list[str]]:
    """Return ``doc`` in the current version's shape and notes on what was changed."""
    version = doc.get("version")
    notes: list[str] = []
    if version is None:
        if _V2_ONLY & doc.keys() or isinstance(doc.get("kafka"), Mapping):
            notes.append(f"{where}: no 'version' key; the layout is version 2, assumed")
            version = 2
        else:
            version = 1
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"'version' must be an integer, got {version!r}", f"{where}: version")
    if version > CURRENT_VERSION:
        raise ConfigError(
            f"version {version} is newer than this RUNE understands ({CURRENT_VERSION}); "
            "upgrade RUNE",
            f"{where}: version",
        )
    if version < 1:
        raise ConfigError(f"unknown settings version {version}", f"{where}: version")
    out = {k: v for k, v in doc.items() if k != "version"}
    if version == 1:
        out = _v1_to_v2(out, where, notes)
    out["version"] = CURRENT_VERSION
    return out, notes


def _v1_to_v2(doc: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        move = _V1_MOVES.get(key)
        if move is None:
            out[key] = value  # [topics] is the same in both; anything else fails validation
            continue
        section, name = move
        if key == "kafka" and value is None:
            value = ""
        out.setdefault(section, {})[name] = value
        notes.append(f"{where}: {key} -> [{section}] {name}")
    notes.insert(0, f"{where}: version 1 layout migrated to version {CURRENT_VERSION}")
    return out
