"""Containing what should not happen: an exception from handling one record that is not one
of RUNE's own errors is a bug, but it must not stop the service or stall a partition. It is
logged with its traceback, counted (``internal_errors_total{stage}``) and turned into the
record's error (the record is dead-lettered or answered with a deny), and the stage goes on.
"""

from __future__ import annotations

import structlog

from rune.streams.context import Context

__all__ = ["contained"]

_log = structlog.get_logger("rune.faults")


def contained(ctx: Context, stage: str, where: str, exc: BaseException) -> str:
    """Log and count ``exc`` raised while handling the record at ``where``; returns the error
    text for that record."""
    ctx.metrics.internal_errors.labels(stage).inc()
    _log.error("internal error", stage=stage, record=where, exc_info=exc)
    return f"internal error: {type(exc).__name__}: {str(exc)[:500]}"
