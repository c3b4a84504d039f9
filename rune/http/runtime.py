"""What the HTTP handlers share: the running service and the mutable parts of the HTTP layer
(rate limiter, reload hook). Stored in the aiohttp application under :data:`RUNTIME`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rune.config import Settings
from rune.config.reload import ReloadReport
from rune.http.limits import RateLimiter
from rune.streams.app import Service
from rune.streams.context import Context

__all__ = ["RUNTIME", "Runtime"]


@dataclass(slots=True)
class Runtime:
    service: Service
    reload: Callable[[], ReloadReport]
    """Re-read the settings and apply the safe subset (SIGHUP, ``POST /admin/reload``)."""
    limiter: RateLimiter = field(init=False)
    draining: bool = False
    """Set at shutdown: readiness fails so load balancers stop sending traffic."""
    background: set[asyncio.Future[Any]] = field(default_factory=set)
    """Writes to the log an HTTP request stopped waiting for (``common.acknowledged``)."""

    def __post_init__(self) -> None:
        s = self.settings.server
        self.limiter = RateLimiter(s.rate_limit_per_s, s.rate_limit_burst)

    @property
    def ctx(self) -> Context:
        return self.service.ctx

    @property
    def settings(self) -> Settings:
        return self.service.ctx.settings

    def reconfigure(self, settings: Settings) -> None:
        self.service.reconfigure(settings)
        s = settings.server
        self.limiter.configure(s.rate_limit_per_s, s.rate_limit_burst)


RUNTIME: web.AppKey[Runtime] = web.AppKey("rune.runtime", Runtime)
