"""Activating a policy bundle: the stale-version check, and the preparation that runs off
the event loop.

:meth:`rune.Authorizer.bundle_job` snapshots what a new bundle needs into a
:class:`BundleJob`; ``job.run()`` (any thread) validates it, compiles Cedar, materializes the
new program over the snapshot and warms it, giving a :class:`PreparedBundle` that
:meth:`rune.Authorizer.activate` swaps in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from rune.errors import RuneError
from rune.policies.builtin_rules import ALLOW, DENY, ENTITY_IN, HAS_MEMBERS
from rune.policies.bundle import Bundle, build_bundle, compile_bundle, datalog_error, datalog_source
from rune.policies.errors import StaleBundleError
from rune.policies.views import Views

__all__ = [
    "WARM_RELATIONS",
    "BundleJob",
    "EngineFactory",
    "PreparedBundle",
    "check_newer",
    "default_engine",
]

EngineFactory = Callable[[str], Views]

WARM_RELATIONS: Final = (ALLOW, DENY, ENTITY_IN, HAS_MEMBERS)
"""Relations a new engine compiles and indexes before it serves (decisions read them)."""


def default_engine(source: str) -> Views:
    from rune.ivm import Engine

    engine: Views = Engine(source)
    return engine


def check_newer(bundle: object, active: int | None) -> None:
    """Raise :class:`~rune.policies.errors.StaleBundleError` when ``bundle`` (raw) names an
    integer version not higher than the ``active`` one (other mistakes are validation's)."""
    version = bundle.get("version") if isinstance(bundle, Mapping) else None
    if (
        active is not None
        and isinstance(version, int)
        and not isinstance(version, bool)
        and version <= active
    ):
        raise StaleBundleError(
            f"version {version} is not higher than the active version {active}", "version"
        )


@dataclass(frozen=True, slots=True)
class PreparedBundle:
    """A validated bundle and, when its program differs, the engine materialized for it."""

    bundle: Bundle
    source: str
    engine: Views | None
    generation: int


@dataclass(frozen=True, slots=True)
class BundleJob:
    """What :meth:`Authorizer.bundle_job` hands to another thread: everything ``run`` reads
    is its own (the raw bundle, an immutable snapshot of the facts), so it may run while the
    authorizer keeps deciding."""

    raw: object
    snapshot: Any
    """An engine ``FactSnapshot``; None when the program does not change."""
    current_source: str
    generation: int
    factory: EngineFactory

    def run(self) -> PreparedBundle:
        """Validate, compile Cedar, materialize and warm the new program (any thread);
        raise :class:`~rune.policies.errors.BundleError` as ``load_bundle`` would."""
        snapshot = self.snapshot
        if snapshot is None:
            compiled = compile_bundle(self.raw, self.factory)
            return PreparedBundle(compiled, self.current_source, None, self.generation)
        from rune.ivm import Engine

        def materialize(source: str) -> Views:
            engine: Views = Engine.from_snapshot(source, snapshot)
            return engine

        compiled, engine = build_bundle(self.raw, materialize)
        source = datalog_source(compiled.datalog)
        if engine is None:  # no rules of its own: the built-in program over the facts
            try:
                engine = materialize(source)
            except RuneError as exc:
                raise datalog_error(exc, compiled.datalog) from None
        warm = getattr(engine, "warm", None)
        if warm is not None:
            warm([r for r in WARM_RELATIONS if engine.arity(r) is not None])
        return PreparedBundle(compiled, source, engine, self.generation)
