"""Reloading settings while running: only the safe subset changes; the rest needs a restart.

Safe: values read afresh on every use (limits, rate limits, tokens, cache bounds, logging,
batch sizes, waits). Not safe: anything that was used to build connections or state at start
(Kafka address, topics, group, listening address, workers, Datalog options, changefeed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from rune.config.settings import Settings

__all__ = ["SAFE", "ReloadReport", "merge_reload"]

SAFE: Final = frozenset(
    {
        "server.max_body_bytes",
        "server.log_wait_s",
        "server.max_batch",
        "server.rate_limit_per_s",
        "server.rate_limit_burst",
        "server.admin_token",
        "cache.ttl_seconds",
        "cache.max_size_mb",
        "cache.max_entries",
        "logging.level",
        "logging.format",
        "logging.decisions",
        "logging.include_request",
        "logging.pseudonymize",
        "logging.pseudonym_key",
        "stream.ingest_batch",
        "stream.serve_batch",
        "stream.poll_timeout_s",
        "stream.token_wait_s",
        "stream.max_waiting",
        "stream.checkpoint_interval_s",
        "stream.max_event_bytes",
        "stream.max_request_bytes",
        "stream.max_bundle_bytes",
        "stream.partitioning",
        "stream.dead_letter_payload_bytes",
        "stream.retry_backoff_max_s",
    }
)


@dataclass(frozen=True, slots=True)
class ReloadReport:
    applied: tuple[str, ...]
    """Keys whose new value is now in effect."""
    needs_restart: tuple[str, ...]
    """Keys that changed but keep their old value until a restart."""
    error: str | None = None
    """Set when the new settings could not be read (nothing changed)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "applied": list(self.applied),
            "needs_restart": list(self.needs_restart),
            "error": self.error,
        }


def merge_reload(old: Settings, new: Settings) -> tuple[Settings, ReloadReport]:
    """``old`` with the safe keys of ``new``, and what was applied or left for a restart."""
    merged: dict[str, Any] = {}
    applied: list[str] = []
    restart: list[str] = []
    for section in Settings.model_fields:
        before, after = getattr(old, section), getattr(new, section)
        if not isinstance(before, BaseModel):
            merged[section] = before
            continue
        values = {}
        for name in type(before).model_fields:
            key = f"{section}.{name}"
            a, b = getattr(before, name), getattr(after, name)
            if a != b and key in SAFE:
                values[name] = b
                applied.append(key)
            else:
                values[name] = a
                if a != b:
                    restart.append(key)
        merged[section] = type(before).model_validate(values)
    settings = Settings.model_validate(merged)
    return settings, ReloadReport(tuple(applied), tuple(restart))
