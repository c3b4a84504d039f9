"""``rune serve``: the stream service and the HTTP API on one event loop.

Start: the HTTP listener first (liveness answers at once, readiness says ``catching_up``),
then the service catches up and serves. Signals: SIGHUP reloads the settings (safe subset);
SIGTERM/SIGINT drain: readiness fails, the listener closes, in-flight HTTP requests finish
(bounded by ``stream.shutdown_timeout_s``), then the stream service stops as ``rune run``
does (current batches answered and committed), and ``run`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from rune.config import ConfigError, Settings, load
from rune.config.reload import ReloadReport, merge_reload
from rune.connectors.base import Log
from rune.http.app import create_app
from rune.http.limits import MAX_REQUEST_LINE
from rune.http.runtime import Runtime
from rune.ops.logs import configure_logging
from rune.streams.app import Service

__all__ = ["HttpHost"]

_log = structlog.get_logger("rune.serve")


class HttpHost:
    def __init__(
        self,
        settings: Settings,
        log: Log,
        *,
        config_path: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        notice: Callable[[str], None] | None = None,
        reuse_port: bool = False,
    ) -> None:
        """``config_path`` and ``overrides`` are re-read on reload (the file may change)."""
        self.service = Service(settings, log, notice=notice)
        self.runtime = Runtime(self.service, self.reload)
        self.app = create_app(self.runtime)
        self._config = (config_path, dict(overrides or {}))
        self._reuse_port = reuse_port
        self._stop = asyncio.Event()
        self.port: int | None = None
        """The bound port once listening (``server.port = 0`` picks a free one)."""
        self.listening = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    def reload(self) -> ReloadReport:
        """Re-read the settings; apply what may change while running."""
        m = self.service.ctx.metrics
        old = self.runtime.settings
        try:
            new = load(*self._config).settings
        except ConfigError as exc:
            m.reloads.labels("error").inc()
            _log.error("settings reload failed; nothing changed", error=str(exc))
            return ReloadReport((), (), str(exc))
        merged, report = merge_reload(old, new)
        self.runtime.reconfigure(merged)
        if merged.logging != old.logging:
            configure_logging(merged.logging)
        m.reloads.labels("ok").inc()
        _log.info(
            "settings reloaded",
            applied=list(report.applied),
            needs_restart=list(report.needs_restart),
        )
        return report

    async def run(self) -> None:
        """Serve until :meth:`stop` (or a signal, with ``install_signal_handlers``)."""
        s = self.runtime.settings.server
        runner = web.AppRunner(
            self.app,
            access_log=None,
            shutdown_timeout=self.runtime.settings.stream.shutdown_timeout_s,
            max_line_size=MAX_REQUEST_LINE,
        )
        await runner.setup()
        site = web.TCPSite(runner, s.host, s.port, reuse_port=self._reuse_port or None)
        await site.start()
        addresses = runner.addresses  # (host, port, ...) of each listening socket
        self.port = int(addresses[0][1]) if addresses else s.port
        self.listening.set()
        _log.info("listening", host=s.host, port=self.port)
        service_task = asyncio.create_task(self.service.run(), name="rune-service")
        stop_task = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait([service_task, stop_task], return_when="FIRST_COMPLETED")
        finally:
            self.runtime.draining = True
            await runner.cleanup()  # closes the listener, lets in-flight requests finish
            self.service.stop()
            stop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop_task
            await service_task  # re-raises a failure of the service

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
