"""``rune.Authorizer``: the embedded, in-process authorization engine.

One object holds the Datalog views (``rune.ivm.Engine``), the Cedar entity store, the active
policy bundle and the decision cache, and wires them together::

    az = Authorizer()
    az.load_bundle({"version": 1, "datalog": "...", "cedar": "..."})
    az.apply({"op": "assert", "fact": ["member", alice, eng]})
    az.check({"id": "r-1", "principal": ..., "action": ..., "resource": ..., "context": {}})

``check`` returns the contract-v1 record as a dict; ``decide`` the typed
:class:`~rune.policies.decision.Decision` the service passes on.

Not thread-safe: use it from one thread (the streams layer drives it from one event loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from rune.errors import RuneError
from rune.models.check import ZanzibarView
from rune.models.requests import decide_check, is_check_request
from rune.policies.activation import (
    WARM_RELATIONS,
    BundleJob,
    EngineFactory,
    PreparedBundle,
    check_newer,
    default_engine,
)
from rune.policies.builtin_rules import ALLOW, DENY
from rune.policies.bundle import Bundle, compile_bundle, datalog_error, datalog_source
from rune.policies.cache import CacheStats, DecisionCache
from rune.policies.decide import Counters, Outcome, State, decide
from rune.policies.decision import Decision, Watermark
from rune.policies.entities import EntityStore
from rune.policies.errors import BundleError, EventError, RequestError, StaleBundleError
from rune.policies.events import net_events
from rune.policies.lookup import MAX_CANDIDATES, LookupQuery, Page, lookup
from rune.policies.requests import (
    MAX_CONTEXT_DEPTH,
    MAX_REQUEST_ID_CHARS,
    CacheKey,
    Request,
    parse_request,
    read_id,
)
from rune.policies.slice import FragmentMemo
from rune.policies.uids import is_entity_type, parse_uid
from rune.policies.views import ChangeLike, NetChange, Views

__all__ = ["NO_BUNDLE", "WARM_RELATIONS", "Authorizer", "BundleJob", "PreparedBundle"]

NO_BUNDLE: Final = "no active bundle"
"""The ``error`` of every decision made while no policy bundle is active."""


class Authorizer:
    """Embedded authorizer: bundles, fact/entity events, checks, reverse queries, cache."""

    def __init__(
        self,
        *,
        cache_entries: int = 100_000,
        cache_bytes: int = 64 * 1024 * 1024,
        cache_ttl_s: float = 0.0,
        max_request_id_chars: int = MAX_REQUEST_ID_CHARS,
        max_context_depth: int = MAX_CONTEXT_DEPTH,
        max_lookup_candidates: int = MAX_CANDIDATES,
        rule_reasons: bool = False,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        """``rule_reasons``: Datalog reasons name the deriving rule (``datalog:allow@3:1``),
        at the cost of an ``Engine.explain`` per Datalog-determined decision.
        ``cache_ttl_s`` > 0 bounds the age of cached decisions (they are dropped on every
        change anyway); ``max_request_id_chars`` and ``max_context_depth`` are request limits."""
        self._factory: EngineFactory = engine_factory or default_engine
        self._source = datalog_source("")
        """The program the engine runs (a bundle with the same Datalog skips recompiling)."""
        self._generation = 0
        """Counts fact updates (a prepared bundle must be activated over the facts it saw)."""
        self._engine = self._factory(self._source)
        self._store = EntityStore()
        self._bundle: Bundle | None = None
        self._cache: DecisionCache[CacheKey, Outcome] = DecisionCache(
            cache_entries, cache_bytes, cache_ttl_s
        )
        self._limits = (max_request_id_chars, max_context_depth)
        self._counters = Counters()
        self._watermark: dict[str, dict[str, int]] = {}
        self._snapshot: Watermark | None = None
        """The watermark decisions carry: shared until it next advances (never mutated)."""
        self._max_candidates = max_lookup_candidates
        self._rule_reasons = rule_reasons
        self._memo = FragmentMemo()
        self._zanzibar: ZanzibarView | None = None
        self._state = self._make_state()

    # -- state -------------------------------------------------------------------------

    @property
    def bundle(self) -> Bundle | None:
        return self._bundle

    @property
    def policy_version(self) -> int | None:
        return self._bundle.version if self._bundle is not None else None

    @property
    def engine(self) -> Views:
        """The live Datalog views (read them; change them only through ``apply``)."""
        return self._engine

    @property
    def watermark(self) -> dict[str, dict[str, int]]:
        """Applied positions ``{topic: {partition: offset}}`` (a copy)."""
        return {t: dict(p) for t, p in self._watermark.items()}

    def advance_watermark(self, topic: str, partition: int | str, offset: int) -> None:
        """Record that events up to ``offset`` of ``topic``/``partition`` have been applied."""
        parts = self._watermark.setdefault(topic, {})
        key = str(partition)
        if offset > parts.get(key, -1):
            parts[key] = offset
            self._snapshot = None

    def cache_stats(self) -> CacheStats:
        return self._cache.stats()

    @property
    def counters(self) -> Counters:
        """Work done by decisions so far (Cedar evaluations and calls)."""
        return self._counters

    def configure_cache(self, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        """Change the decision cache's bounds (entries over them are evicted)."""
        self._cache.configure(max_entries, max_bytes, ttl_s)

    def clear_cache(self) -> int:
        """Forget every cached decision; returns how many there were."""
        n = len(self._cache)
        self._invalidate()
        return n

    def _make_state(self) -> State:
        self._zanzibar = None  # a program change: the model is read again on first use
        rels = self._engine.relations()
        return State(
            self._bundle,
            self._engine,
            self._store,
            ALLOW in rels,
            DENY in rels,
            self._memo,
            self._rule_reasons,
            self._counters,
        )

    def _invalidate(self) -> None:
        """Something a decision may read changed: forget cached decisions and fragments."""
        self._cache.invalidate()
        self._memo.clear()

    # -- bundles ------------------------------------------------------------------------

    def load_bundle(self, bundle: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and activate a bundle of a higher version, atomically.

        Raises :class:`~rune.policies.errors.BundleError` (the active bundle stays) when the
        bundle is invalid, :class:`~rune.policies.errors.StaleBundleError` when its version is
        not higher than the active one. Returns a report with the relations that changed.
        """
        active = self.policy_version
        check_newer(bundle, active)
        compiled = compile_bundle(
            dict(bundle) if isinstance(bundle, Mapping) else bundle, self._factory
        )
        source = datalog_source(compiled.datalog)
        try:
            changes = self._engine.replace(source) if source != self._source else {}
        except RuneError as exc:
            raise datalog_error(exc, compiled.datalog) from None
        self._source = source
        self._bundle = compiled
        self._state = self._make_state()
        self._invalidate()
        return {
            "version": compiled.version,
            "previous_version": active,
            "cedar_policies": len(compiled.policies),
            "changes": {
                rel: {"added": len(ch.added), "removed": len(ch.removed)}
                for rel, ch in changes.items()
            },
        }

    def bundle_job(self, bundle: Mapping[str, Any]) -> BundleJob:
        """The work of activating ``bundle``, split so the costly part runs off this thread:
        ``job = az.bundle_job(raw)`` (here: the stale check and, when the bundle's Datalog
        differs from the running program, a snapshot of the facts), ``prepared = job.run()``
        (any thread: validation, Cedar, the new materialization and its warm-up; this
        authorizer keeps deciding meanwhile), ``az.activate(prepared)`` (here: the swap).

        Pitfall: ``activate`` refuses a job when facts changed after ``bundle_job`` (the new
        views would miss them): the caller holds fact events back in between.
        """
        active = self.policy_version
        check_newer(bundle, active)
        raw = dict(bundle) if isinstance(bundle, Mapping) else bundle
        datalog = raw.get("datalog", "") if isinstance(raw, dict) else None
        same = isinstance(datalog, str) and datalog_source(datalog) == self._source
        snapshot = None if same else self._engine.snapshot()
        return BundleJob(raw, snapshot, self._source, self._generation, self._factory)

    def activate(self, prepared: PreparedBundle) -> dict[str, Any]:
        """Swap in a bundle prepared by :meth:`bundle_job`; returns a report like
        :meth:`load_bundle`'s, without per-relation changes. The previous engine is
        discarded (its memory freed now, not at the next full garbage collection)."""
        if prepared.generation != self._generation:
            raise BundleError("facts changed while the bundle was prepared; prepare it again")
        active = self.policy_version
        compiled = prepared.bundle
        if active is not None and compiled.version <= active:
            raise StaleBundleError(
                f"version {compiled.version} is not higher than the active version {active}",
                "version",
            )
        old = None
        if prepared.engine is not None:
            old, self._engine = self._engine, prepared.engine
        self._source = prepared.source
        self._bundle = compiled
        self._state = self._make_state()
        self._invalidate()
        discard = getattr(old, "discard", None)
        if discard is not None:
            discard()
        return {
            "version": compiled.version,
            "previous_version": active,
            "cedar_policies": len(compiled.policies),
            "changes": None,
        }

    def validate_bundle(self, bundle: Mapping[str, Any]) -> Bundle:
        """Check ``bundle`` as ``load_bundle`` would, without activating it (the Datalog is
        compiled on an empty engine: arity conflicts with stored facts show only at load)."""
        active = self.policy_version
        check_newer(bundle, active)
        return compile_bundle(
            dict(bundle) if isinstance(bundle, Mapping) else bundle, self._factory
        )

    # -- events -------------------------------------------------------------------------

    def validate_events(self, events: Sequence[object], prefix: str = "events") -> None:
        """Check ``events`` against the active bundle as ``apply_batch`` would, without
        applying them; raise :class:`~rune.policies.errors.EventError` naming the place."""
        schema = self._bundle.schema if self._bundle is not None else None
        net_events(events, self._store, schema, prefix, self._engine.arity)

    def apply(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        """Apply one fact or entity event; returns the engine's changes (relation -> Change)."""
        return self._apply([event], prefix="")

    def apply_batch(self, events: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
        """Apply events all-or-nothing in one engine update (later events win on a key)."""
        return self._apply(list(events), prefix="events")

    def apply_each(
        self,
        events: Sequence[Mapping[str, Any]],
        on_reject: Callable[[int, Exception], Mapping[str, Any] | None] | None = None,
    ) -> tuple[dict[str, ChangeLike], list[tuple[int, Exception]]]:
        """Apply ``events`` in order as if one by one, rejecting the bad ones: one engine
        update when every event is valid, else event by event. Returns the net changes and
        the rejected ``(index, error)``. ``on_reject(index, error)`` may return an event to
        apply in the rejected one's place (in order: a later event still wins); it also
        receives exceptions that are not RuneErrors (bugs), which otherwise propagate."""
        try:
            return dict(self.apply_batch(events)), []
        except RuneError:
            pass
        except Exception:
            if on_reject is None:
                raise
        merged: dict[str, list[ChangeLike]] = {}
        rejected: list[tuple[int, Exception]] = []
        for i, event in enumerate(events):
            try:
                one = self.apply(event)
            except Exception as exc:
                if on_reject is None and not isinstance(exc, RuneError):
                    raise
                rejected.append((i, exc))
                replacement = on_reject(i, exc) if on_reject is not None else None
                if replacement is None:
                    continue
                try:
                    one = self.apply(replacement)
                except Exception:  # nothing the engine accepts in its place
                    continue
            for rel, change in one.items():
                merged.setdefault(rel, []).append(change)
        return {rel: NetChange(chs) for rel, chs in merged.items()}, rejected

    def _apply(self, events: Sequence[object], prefix: str) -> Mapping[str, Any]:
        schema = self._bundle.schema if self._bundle is not None else None
        p = net_events(events, self._store, schema, prefix, self._engine.arity)
        if p.empty:
            return {}
        self._generation += 1
        try:
            changes = self._engine.update(insert=p.insert, delete=p.delete)
        except RuneError as exc:
            raise EventError(f"the engine rejected the batch: {exc}", prefix) from None
        for uid, entity in p.entities.items():
            if entity is None:
                self._store.remove(uid)
            else:
                self._store.put(entity)
        if changes or p.entities:
            self._cache.invalidate()
            self._memo.forget(changes, p.entities)
        state = self._state
        if (ALLOW in changes and not state.has_allow) or (DENY in changes and not state.has_deny):
            self._state = self._make_state()  # allow/deny first appeared as base facts
        return changes

    # -- decisions ----------------------------------------------------------------------

    def decide(self, request: Mapping[str, Any]) -> Decision:
        """Decide one request; never raises on bad input (deny with an ``error``)."""
        start = time.perf_counter_ns()
        if is_check_request(request) and self._bundle is not None:
            return self._decision(read_id(request, self._limits[0]), self._check(request), start)
        try:
            req = parse_request(request, *self._limits)
        except RequestError as exc:
            return self._bad(request, exc, start)
        if self._bundle is None:
            return self._refused(req.id, NO_BUNDLE, start)
        if req.explain:
            return self._decision(req.id, decide([req], self._state)[0], start)
        cache = self._cache
        outcome = cache.get(req.key)
        if outcome is None:
            outcome = decide([req], self._state)[0]
            if cache.max_entries:
                cache.put(req.key, outcome, outcome.size() + len(req.key[3]))
        return self._decision(req.id, outcome, start)

    def decide_batch(self, requests: Iterable[Mapping[str, Any]]) -> list[Decision]:
        """Decide requests in order; misses share one Cedar call over a union slice."""
        start = time.perf_counter_ns()
        raws = list(requests)
        out: list[Decision | None] = [None] * len(raws)
        todo: list[tuple[int, Request]] = []
        cache = self._cache
        no_bundle = self._bundle is None
        for i, raw in enumerate(raws):
            if is_check_request(raw) and not no_bundle:
                rid = read_id(raw, self._limits[0])
                out[i] = self._decision(rid, self._check(raw), start)
                continue
            try:
                req = parse_request(raw, *self._limits)
            except RequestError as exc:
                out[i] = self._bad(raw, exc, start)
                continue
            if no_bundle:
                out[i] = self._refused(req.id, NO_BUNDLE, start)
                continue
            if not req.explain:
                hit = cache.get(req.key)
                if hit is not None:
                    out[i] = self._decision(req.id, hit, start)
                    continue
            todo.append((i, req))
        if todo:
            outcomes = decide([r for _, r in todo], self._state)
            for (i, req), outcome in zip(todo, outcomes, strict=True):
                if not req.explain:
                    cache.put(req.key, outcome, outcome.size() + len(req.key[3]))
                out[i] = self._decision(req.id, outcome, start)
        return [d for d in out if d is not None]

    def _check(self, raw: Mapping[str, Any]) -> Outcome:
        """A Zanzibar check (``resource``, ``permission``, ``subject``; :mod:`rune.models`)."""
        view = self._zanzibar
        if view is None:
            view = self._zanzibar = ZanzibarView(self._engine)
        return decide_check(view, raw, self._limits[0])

    def check(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Decide one request; the contract-v1 decision record (see :meth:`decide`)."""
        return self.decide(request).to_json()

    def check_batch(self, requests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`decide_batch` as contract-v1 records."""
        return [d.to_json() for d in self.decide_batch(requests)]

    def refuse(self, request: object, error: str) -> Decision:
        """A deny that says why ``request`` was not decided (a stale view, overload...)."""
        return self._refused(read_id(request, self._limits[0]), error, time.perf_counter_ns())

    def _refused(self, rid: str | None, error: str, start: int) -> Decision:
        return Decision(
            rid,
            False,
            (),
            (),
            self.policy_version,
            self._watermark_view(),
            (time.perf_counter_ns() - start) // 1000,
            error,
        )

    def _watermark_view(self) -> Watermark:
        view = self._snapshot
        if view is None:
            view = self._snapshot = {t: dict(p) for t, p in self._watermark.items()}
        return view

    def _decision(self, rid: str | None, outcome: Outcome, start: int) -> Decision:
        return Decision(
            rid,
            outcome.allowed,
            outcome.reasons,
            outcome.errors,
            self._bundle.version if self._bundle is not None else None,
            self._snapshot or self._watermark_view(),
            (time.perf_counter_ns() - start) // 1000,
            outcome.error,
            outcome.explanation,
        )

    def _bad(self, raw: object, exc: RequestError, start: int) -> Decision:
        rid = read_id(raw, self._limits[0])
        return self._decision(rid, Outcome(False, (), (), str(exc)), start)

    # -- reverse queries ---------------------------------------------------------------

    def lookup_resources(
        self,
        principal: Mapping[str, Any],
        action: Mapping[str, Any],
        resource_type: str,
        cursor: str | None = None,
        limit: int = 100,
        context: Mapping[str, Any] | None = None,
    ) -> Page:
        """Resources of ``resource_type`` that ``principal`` may ``action`` (one page)."""
        p = parse_uid(principal, "principal", RequestError)
        a = parse_uid(action, "action", RequestError)
        return self._lookup(
            LookupQuery(p, a, resource_type, True, dict(context or {}), cursor, limit)
        )

    def lookup_subjects(
        self,
        resource: Mapping[str, Any],
        action: Mapping[str, Any],
        principal_type: str,
        cursor: str | None = None,
        limit: int = 100,
        context: Mapping[str, Any] | None = None,
    ) -> Page:
        """Principals of ``principal_type`` that may ``action`` on ``resource`` (one page)."""
        r = parse_uid(resource, "resource", RequestError)
        a = parse_uid(action, "action", RequestError)
        return self._lookup(
            LookupQuery(r, a, principal_type, False, dict(context or {}), cursor, limit)
        )

    def _lookup(self, query: LookupQuery) -> Page:
        if not is_entity_type(query.free_type):
            raise RequestError(f"invalid entity type {query.free_type!r}", "type")
        state = self._state
        return lookup(state, lambda reqs: decide(reqs, state), query, self._max_candidates)

    def stats(self) -> dict[str, Any]:
        return {
            "policy_version": self.policy_version,
            "entities": len(self._store),
            "cache": self._cache.stats().to_json(),
        }
