"""The small context object ``app.Service`` hands to every stage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from rune.authorizer import Authorizer
from rune.config import Settings
from rune.connectors.base import Log
from rune.ops.audit import Audit
from rune.ops.metrics import Metrics

__all__ = ["Context", "Stats"]


@dataclass(slots=True)
class Stats:
    events_applied: int = 0
    events_rejected: int = 0
    records_undecodable: int = 0
    bundles_loaded: int = 0
    bundles_rejected: int = 0
    requests: int = 0
    decisions: int = 0
    stale: int = 0
    dead_letters: int = 0
    dead_letters_skipped: int = 0
    """Dead letters not published again after a restart (see ``rune.streams.dlq``)."""
    dead_letter_stages: dict[str, int] = field(default_factory=dict)
    changes_published: int = 0
    checkpoints: int = 0


def _log_notice(message: str) -> None:
    structlog.get_logger("rune").warning(message)


@dataclass(slots=True)
class Context:
    settings: Settings
    """The active settings; a reload replaces the object (read it anew on every use)."""
    log: Log
    authorizer: Authorizer
    metrics: Metrics
    audit: Audit
    notice: Callable[[str], None] = _log_notice
    """Where human-readable notices go (rejections, dead letters)."""
    stats: Stats = field(default_factory=Stats)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    """Set after every applied ingest step (waiting requests re-check their tokens)."""
    last_rejection: str | None = None
    next_step: asyncio.Event = field(default_factory=asyncio.Event)
    """Set (and replaced) after every applied ingest step: grab it, check, then await it."""

    def stepped(self) -> None:
        """Wake everything waiting for the next applied step."""
        done, self.next_step = self.next_step, asyncio.Event()
        done.set()
        self.progress.set()
