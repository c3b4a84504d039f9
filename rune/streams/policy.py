"""Policy bundles from the policy topic: validated, swapped in atomically between ingest
steps; an invalid or stale bundle is rejected (the active one stays), logged and published
to the dead-letter topic. Key = bundle name; a tombstone is ignored (a bundle is replaced by
a higher version, never unloaded)."""

from __future__ import annotations

import orjson

from rune.connectors.base import Record
from rune.errors import RuneError
from rune.streams.context import Context

__all__ = ["apply_bundles"]


def apply_bundles(ctx: Context, records: list[Record]) -> list[tuple[Record, str, str]]:
    """Load the bundles of ``records`` in order; returns dead letters ``(record, stage, error)``."""
    dead: list[tuple[Record, str, str]] = []
    az = ctx.authorizer
    for record in records:
        if record.value is None:
            continue
        try:
            bundle = orjson.loads(record.value)
        except orjson.JSONDecodeError as exc:
            dead.append((record, "policy", f"bundle rejected: invalid JSON: {exc}"))
            ctx.stats.bundles_rejected += 1
            continue
        if not isinstance(bundle, dict):
            dead.append((record, "policy", "bundle rejected: a bundle is a JSON object"))
            ctx.stats.bundles_rejected += 1
            continue
        try:
            report = az.load_bundle(bundle)
        except RuneError as exc:
            message = f"bundle rejected: {exc}"
            ctx.last_rejection = message
            ctx.stats.bundles_rejected += 1
            dead.append((record, "policy", message))
            continue
        ctx.stats.bundles_loaded += 1
        previous = report["previous_version"]
        was = f" (was v{previous})" if previous is not None else ""
        ctx.notice(f"rune: bundle v{report['version']} active{was}")
    return dead
