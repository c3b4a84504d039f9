"""Structured logs: structlog, one JSON object per line on stderr (or a console format).

Library loggers (aiokafka, aiohttp) go through the same renderer, so every line of the process
is JSON. Call :func:`configure_logging` once at start and again on reload (it is idempotent).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson
import structlog

from rune.config import Logging

__all__ = ["configure_logging"]

_CHATTY = ("aiokafka", "kafka", "aiohttp.access")


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(cfg: Logging, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging to ``stream`` (stderr) at
    ``cfg.level`` in ``cfg.format``."""
    out = stream or sys.stderr
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if cfg.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in _CHATTY:  # their INFO lines are per connection/request: noise at info level
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
