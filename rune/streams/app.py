"""``Service``: wires the stages (ingest, policy, serve, consistency, changefeed, dead
letters) around one :class:`~rune.streams.context.Context` and runs them on one event loop.

Start-up: create missing topics; read the end offsets of the fact and policy topics; apply
everything up to them (readiness); reconcile the changefeed; then serve requests while
following the live tail. ``stop()`` (SIGTERM/SIGINT in the CLI) stops fetching, lets the
current batches finish (decisions produced and acknowledged, offsets committed) and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from rune.authorizer import Authorizer
from rune.config import Settings
from rune.connectors.base import TP, ConnectorError, FatalLogError, Log, TopicSpec
from rune.ops.audit import Audit
from rune.ops.metrics import Metrics, ServiceView
from rune.streams import heap
from rune.streams.bundles import BundleStage
from rune.streams.changefeed import Changefeed
from rune.streams.context import Context
from rune.streams.dlq import DeadLetters
from rune.streams.errors import StartupError
from rune.streams.ingest import Ingest
from rune.streams.outbox import Outbox
from rune.streams.responder import Responder
from rune.streams.retry import Backoff
from rune.streams.state import ServiceState

__all__ = ["Service", "build_authorizer", "kafka_log", "topic_specs"]

_log = structlog.get_logger("rune.service")
T = TypeVar("T")


class _Stopped(Exception):
    """``stop()`` was called while waiting for the log to come back."""


COMPACT = {"cleanup.policy": "compact"}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics RUNE uses; facts, policies and changes are compacted. With 3 or more
    replicas every topic asks for ``min.insync.replicas`` = 2, so an acknowledged record
    (produced with acks=all) survives the loss of a broker."""
    t, n, rf = settings.topics, settings.kafka.partitions, settings.kafka.replication_factor
    durable = {"min.insync.replicas": "2"} if rf >= 3 else {}
    compact = {**COMPACT, **durable}
    # a bundle record may be as large as stream.max_bundle_bytes; the state topic keeps it too
    bundles = {**compact, "max.message.bytes": str(settings.stream.max_bundle_bytes + 65536)}
    return [
        TopicSpec(t.facts, n, compact, rf),
        TopicSpec(t.policies, 1, bundles, rf),
        TopicSpec(t.requests, n, durable, rf),
        TopicSpec(t.decisions, n, durable, rf),
        TopicSpec(t.changes, n, compact, rf),
        TopicSpec(t.dlq, 1, durable, rf),
        TopicSpec(t.state, 1, bundles, rf),
    ]


def kafka_log(
    settings: Settings, *, instance: str = "", notice: Callable[[str], None] | None = None
) -> Log:
    """The Kafka log of ``settings`` (``instance`` tells workers on one host apart)."""
    from rune.connectors.kafka import KafkaLog, KafkaOptions

    k = settings.kafka
    options = KafkaOptions(
        bootstrap=k.bootstrap,
        client_id=k.client_id,
        isolation_level=k.isolation_level,
        linger_ms=k.linger_ms,
        batch_bytes=k.batch_bytes,
        compression=k.compression,
        delivery_timeout_ms=k.delivery_timeout_ms,
        request_timeout_ms=k.request_timeout_ms,
        fetch_queue_kbytes=k.fetch_queue_kbytes,
        exactly_once=k.exactly_once,
        transactional_id=k.transactional_id,
        instance=instance,
        transaction_timeout_ms=k.transaction_timeout_ms,
        librdkafka={name: v.get_secret_value() for name, v in k.librdkafka.items()},
    )
    return KafkaLog(options, notice=notice)


def build_authorizer(settings: Settings) -> Authorizer:
    """An Authorizer with the cache, request limits and Datalog options of ``settings``."""
    from rune.ivm import Engine

    d = settings.datalog

    def engine(source: str) -> Engine:
        return Engine(source, max_iterations=d.max_iterations, optimize=d.enable_optimizations)

    c, s = settings.cache, settings.server
    return Authorizer(
        cache_entries=c.max_entries,
        cache_bytes=int(c.max_size_mb * 1024 * 1024),
        cache_ttl_s=c.ttl_seconds,
        max_request_id_chars=s.max_id_chars,
        max_context_depth=s.max_context_depth,
        engine_factory=engine,
    )


class Service:
    """The stream service over one log; ``ctx`` is what its stages (and the HTTP layer) share."""

    def __init__(
        self,
        settings: Settings,
        log: Log,
        *,
        authorizer: Authorizer | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        az = authorizer or build_authorizer(settings)
        metrics = Metrics()
        self.ctx = Context(settings, log, az, metrics, Audit(settings.logging, metrics))
        if notice is not None:
            self.ctx.notice = notice
        ctx = self.ctx
        metrics.bind(
            ServiceView(
                az,
                lambda: {
                    name: value
                    for name in ctx.stats.__slots__
                    if isinstance(value := getattr(ctx.stats, name), int)
                },
                lambda: ctx.stats.dead_letter_stages,
                lambda: self.ready,
                log.available,
            )
        )
        self.state = ServiceState(ctx)
        self.outbox = Outbox(ctx)
        self.dead_letters = DeadLetters(ctx, self.state)
        self.bundles = BundleStage(ctx, self.state)
        self.ingest = Ingest(ctx, self.bundles, self.dead_letters)
        self.responder = Responder(ctx, self.outbox, self.dead_letters)
        self.changefeed = Changefeed(ctx)
        self.ingest.on_changes.append(self.changefeed.on_changes)

    @property
    def ready(self) -> bool:
        """Caught up, a bundle active, the log reachable, not stopping."""
        ctx = self.ctx
        return (
            ctx.ready.is_set()
            and ctx.authorizer.policy_version is not None
            and not ctx.stopping.is_set()
            and ctx.log.available()
        )

    def stop(self) -> None:
        self.ctx.stopping.set()

    def reconfigure(self, settings: Settings) -> None:
        """Switch to ``settings`` (already limited to what may change while running)."""
        c = settings.cache
        self.ctx.authorizer.configure_cache(
            c.max_entries, int(c.max_size_mb * 1024 * 1024), c.ttl_seconds
        )
        self.ctx.audit.configure(settings.logging)
        self.ctx.settings = settings

    async def refresh_lag(self) -> dict[TP, int]:
        """Records behind the log end per ingested and served partition (for metrics)."""
        ctx = self.ctx
        positions = dict(self.ingest.positions)
        if not positions:
            return {}
        topics = list(self.ingest.topics)
        if self.responder.opened:
            positions.update(await self.responder.positions())
            topics.append(ctx.settings.topics.requests)
        ends = await ctx.log.end_offsets(topics)
        lag = {tp: max(0, end - positions.get(tp, 0)) for tp, end in ends.items()}
        view = ctx.metrics.view
        if view is not None:
            view.lag = lag
        return lag

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)

    async def run(self, *, until_idle: bool = False, require_bundle: bool = False) -> None:
        """Run until ``stop()``; ``until_idle``: also stop once every record present is
        handled (embedded runs over files). ``require_bundle``: fail at readiness when no
        valid bundle is active.

        A log that cannot be reached is waited for (with backoff, not ready meanwhile);
        a fatal log error (:class:`~rune.connectors.base.FatalLogError`) stops the service
        and is raised."""
        ctx = self.ctx
        try:
            await self._retry("starting the log client", ctx.log.start)
            await self._retry(
                "creating the topics", lambda: ctx.log.ensure_topics(topic_specs(ctx.settings))
            )
            main = asyncio.create_task(self._run(until_idle, require_bundle), name="rune-main")
            fatal = asyncio.create_task(ctx.log.failed(), name="rune-log-watch")
            done, _ = await asyncio.wait([main, fatal], return_when="FIRST_COMPLETED")
            if fatal in done:
                ctx.stopping.set()
                ctx.progress.set()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(main, ctx.settings.stream.shutdown_timeout_s)
                raise fatal.result()
            fatal.cancel()
            await main  # re-raises its failure
        except _Stopped:
            return
        finally:
            await ctx.log.close()

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()`` until it succeeds; a :class:`ConnectorError` that is not fatal
        is waited out with backoff (the service is not ready meanwhile)."""
        ctx = self.ctx
        backoff = Backoff(ctx.settings.stream.retry_backoff_max_s)
        while True:
            if ctx.stopping.is_set():
                raise _Stopped
            try:
                return await call()
            except FatalLogError:
                raise
            except ConnectorError as exc:
                ctx.notice(f"waiting for the log ({what}): {exc}")
                await backoff.wait(ctx.stopping)

    async def _run(self, until_idle: bool, require_bundle: bool) -> None:
        ctx = self.ctx
        restored = await self._retry("reading the state topic", self.state.restore)
        self.dead_letters.replayed = dict(restored.dead_lettered)
        await self.bundles.restore(restored)
        await self._retry("opening the ingest reader", self.ingest.open)
        try:
            ends = await self._retry(
                "reading end offsets", lambda: ctx.log.end_offsets(self.ingest.topics)
            )
            while not self.ingest.caught_up(ends) and not ctx.stopping.is_set():
                await self.ingest.poll()
            if ctx.stopping.is_set():
                return
            if require_bundle and ctx.authorizer.policy_version is None:
                raise StartupError(ctx.last_rejection or "no policy bundle")
            await self._retry("reconciling the changefeed", self.changefeed.go_live)
            if ctx.settings.stream.gc_freeze:
                _log.debug("heap settled", seconds=round(heap.settle(), 3))
            ctx.ready.set()
            await self._retry("opening the request reader", self.responder.open)
            try:
                await self._serve(until_idle)
            finally:
                await self.responder.close()
        finally:
            await self.ingest.close()

    async def _serve(self, until_idle: bool) -> None:
        ctx = self.ctx
        stop = asyncio.Event()

        async def ingest_loop() -> None:
            while not stop.is_set():
                await self.ingest.poll()
                await self.changefeed.maybe_checkpoint()

        async def serve_loop() -> None:
            while not stop.is_set():
                n = await self.responder.poll()
                if until_idle and n == 0 and await self._idle():
                    ctx.stopping.set()

        async def waiter() -> None:
            await self.responder.wait_loop()

        tasks = [
            asyncio.create_task(ingest_loop(), name="rune-ingest"),
            asyncio.create_task(serve_loop(), name="rune-serve"),
        ]
        wait_task = asyncio.create_task(waiter(), name="rune-waiter")
        stopping = asyncio.create_task(ctx.stopping.wait())
        _done, _ = await asyncio.wait([*tasks, wait_task, stopping], return_when="FIRST_COMPLETED")
        stop.set()
        ctx.stopping.set()
        ctx.progress.set()
        # finish the in-flight batches (bounded), then answer what became ready meanwhile
        _, pending = await asyncio.wait(
            [*tasks, wait_task], timeout=ctx.settings.stream.shutdown_timeout_s
        )
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for task in [*tasks, wait_task]:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        timeout = ctx.settings.stream.shutdown_timeout_s
        try:
            if not pending:
                await asyncio.wait_for(self.responder.serve_waiting(), timeout)
            # every decision acknowledged, the last offsets committed
            await asyncio.wait_for(self.responder.drain(), timeout)
        except TimeoutError:
            ctx.notice(
                "stopped with decisions not acknowledged by the log: their requests stay "
                "uncommitted and are answered after a restart"
            )

    async def _idle(self) -> bool:
        ctx = self.ctx
        ends = await ctx.log.end_offsets(self.ingest.topics)
        if not self.ingest.caught_up(ends) or not self.responder.idle:
            return False
        req = await ctx.log.end_offsets([ctx.settings.topics.requests])
        pos = await self.responder.positions()
        return all(pos.get(tp, 0) >= end for tp, end in req.items())
