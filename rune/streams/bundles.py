"""Policy bundles from the policy topic: validated, swapped in atomically between ingest
steps; an invalid or stale bundle is rejected (the active one stays), logged and
dead-lettered. Key = bundle name; a tombstone is ignored (a bundle is replaced by a higher
version, never unloaded).

Bundles cannot be lost to compaction: every activated bundle is also written to the state
topic (:mod:`rune.streams.state`), and a start restores the best one from there before it
replays the policy topic. During that replay a bundle whose version is not higher than the
restored one was handled before the restart (activated, superseded or rejected) and is
skipped without a new dead letter.

Limits (checked before anything else): ``stream.max_bundle_bytes``; JSON nesting of
``cedar``/``schema`` (``MAX_BUNDLE_DEPTH``); ``version`` within 0..2**63-1; the rounds of a
recursive stratum, ``datalog.max_iterations``.

Off the loop: a bundle is compiled and materialized in a worker thread (``Authorizer.
bundle_job``) while decisions and health answers go on with the active bundle; the ingest
step that carries it waits meanwhile, so no fact changes under the build. The swap is one
assignment; the old views are freed at once (``Engine.discard``), not by a full garbage
collection (a pause as long as the heap is large).
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import orjson

from rune.connectors.base import Record
from rune.errors import RuneError
from rune.streams.context import Context
from rune.streams.dlq import Letter
from rune.streams.faults import contained
from rune.streams.state import Restored, ServiceState

__all__ = ["BundleStage"]


class BundleStage:
    def __init__(self, ctx: Context, state: ServiceState) -> None:
        self.ctx = ctx
        self.state = state
        self.restored_version: int | None = None
        """Version restored from the state topic at start (replayed ones up to it are skipped)."""

    async def restore(self, restored: Restored) -> None:
        """Activate the best bundle the state topic holds (before the policy topic replays)."""
        best = restored.best_bundle()
        if best is None:
            return
        name, version, bundle = best
        try:
            self.ctx.authorizer.load_bundle(bundle)
        except RuneError as exc:  # written by an older RUNE that accepted it: say so, go on
            self.ctx.notice(f"restored bundle {name!r} v{version} no longer loads: {exc}")
            return
        self.restored_version = version
        self.ctx.stats.bundles_loaded += 1
        self.ctx.notice(f"rune: bundle v{version} restored from {self.state.topic}")

    async def apply(self, records: list[Record]) -> tuple[bool, list[Letter]]:
        """Load the bundles of ``records`` in order; returns whether one was activated and
        the dead letters ``(record, stage, error)``."""
        ctx = self.ctx
        dead: list[Letter] = []
        activated = False
        for record in records:
            if record.value is None:
                continue
            bundle: dict[str, Any] | None = None
            try:
                bundle, error = self._decode(record)
                if bundle is not None:
                    error = await self._activate(record, bundle)
            except Exception as exc:  # a bug: contained to this record
                error = contained(ctx, "policy", record.where, exc)
            if error is None:
                activated = activated or bundle is not None
                continue
            message = f"bundle rejected: {error}"
            ctx.last_rejection = message
            ctx.stats.bundles_rejected += 1
            dead.append((record, "policy", message))
        return activated, dead

    def _decode(self, record: Record) -> tuple[dict[str, Any] | None, str | None]:
        """``(bundle, None)``, ``(None, error)``, or ``(None, None)`` to skip silently."""
        value = record.value
        assert value is not None
        limit = self.ctx.settings.stream.max_bundle_bytes
        if len(value) > limit:
            return None, f"record of {len(value)} bytes exceeds {limit} bytes"
        try:
            bundle = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return None, f"invalid JSON: {exc}"
        if not isinstance(bundle, dict):
            return None, "a bundle is a JSON object"
        version = bundle.get("version")
        restored = self.restored_version
        if (
            restored is not None
            and not self.ctx.ready.is_set()
            and isinstance(version, int)
            and version <= restored
        ):
            return None, None  # handled before the restart
        return bundle, None

    async def _activate(self, record: Record, bundle: dict[str, Any]) -> str | None:
        """Compile and materialize the bundle in a worker thread while decisions go on with
        the active one (the caller, an ingest step, holds fact events back meanwhile), then
        swap. Python's cyclic GC is paused during the build (it would walk every new object
        again and again) and the survivors are frozen after it (``stream.gc_freeze``)."""
        ctx = self.ctx
        az = ctx.authorizer
        try:
            job = az.bundle_job(bundle)
        except RuneError as exc:
            return str(exc)
        collecting = gc.isenabled()
        gc.disable()
        try:
            prepared = await asyncio.to_thread(job.run)
        except RuneError as exc:
            return str(exc)
        finally:
            if ctx.settings.stream.gc_freeze:
                gc.freeze()
            if collecting:
                gc.enable()
        try:
            report = az.activate(prepared)
        except RuneError as exc:
            return str(exc)
        ctx.stats.bundles_loaded += 1
        previous = report["previous_version"]
        was = f" (was v{previous})" if previous is not None else ""
        ctx.notice(f"rune: bundle v{report['version']} active{was}")
        name = record.key.decode("utf-8", "replace") if record.key else "default"
        await self.state.save_bundle(
            name, report["version"], bundle, (record.topic, record.partition), record.offset
        )
        return None
