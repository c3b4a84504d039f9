"""The decision function (docs/design.md §2).

    allow = (a Cedar permit applies  or  Datalog derives allow(P, A, R))
            and not (a Cedar forbid applies  or  Datalog derives deny(P, A, R))

Nothing applies: deny. Cedar runs on an entity slice of the live views; its evaluation errors
follow Cedar's semantics (an erroring policy does not apply) and are listed in ``errors``. When
Cedar cannot evaluate at all (the slice violates the schema, a hierarchy cycle), the decision is
deny with Cedar's message in ``errors`` (fail closed, even if Datalog allows). A cycle anywhere in
the hierarchy counts, not only one inside the slice: Cedar rejects the whole entity set then.
``reasons`` are the determining Cedar policies, named by their ``@id("...")`` annotation when
they have one and by Cedar's id (``policy0``) otherwise (sorted), then
``datalog:allow`` or ``datalog:deny`` when the Datalog relation holds (with
``rule_reasons``: ``datalog:allow@line:column`` of the rule that derived it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from rune.ivm.values import EntityRef
from rune.policies.builtin_rules import ALLOW, DENY, IN_CYCLE
from rune.policies.bundle import Bundle
from rune.policies.cedarcall import authorize, cedar_request
from rune.policies.cedartext import PolicyInfo
from rune.policies.entities import EntityStore
from rune.policies.errors import RequestError
from rune.policies.requests import Request
from rune.policies.slice import FragmentMemo, Slice
from rune.policies.views import Views

__all__ = ["DATALOG_ALLOW", "DATALOG_DENY", "Counters", "Outcome", "State", "decide"]

DATALOG_ALLOW: Final = "datalog:allow"
DATALOG_DENY: Final = "datalog:deny"
_BAD_REQUEST: Final = "failed to build request"
_CYCLE: Final = (
    "failed to parse entities: transitive closure computation/enforcement error: "
    "input graph has a cycle containing vertex "
)


@dataclass(frozen=True, slots=True)
class State:
    """What a decision reads: the active bundle, the views and the entity store."""

    bundle: Bundle | None
    views: Views
    store: EntityStore
    has_allow: bool
    has_deny: bool
    memo: FragmentMemo
    rule_reasons: bool = False
    """Name the deriving rule in Datalog reasons (``datalog:allow@3:1``); costs an explain."""
    counters: Counters = field(default_factory=lambda: Counters())


@dataclass(slots=True)
class Counters:
    """Work done by decisions (exported as metrics)."""

    cedar_evaluations: int = 0
    """Requests evaluated by Cedar (cache hits and Datalog-only bundles do not count)."""
    cedar_calls: int = 0
    """Calls into cedarpy (one per batch)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    allowed: bool
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    error: str | None = None
    """Set when the request could not be evaluated (schema violation, slice too large)."""
    explanation: dict[str, Any] | None = None

    def size(self) -> int:
        return sum(len(s) for s in self.reasons) + sum(len(s) for s in self.errors) + 64


@dataclass(slots=True)
class _Cedar:
    evaluated: bool = False
    decision: str | None = None
    reasons: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    annotations: dict[str, str] | None = None
    error: str | None = None
    slice_size: int = 0


_NO_CEDAR: Final = _Cedar()


def decide(requests: Sequence[Request], state: State) -> list[Outcome]:
    """Decide a batch (one Cedar call over the union of the requests' slices)."""
    cedar = _cedar(requests, state)
    return [_combine(req, c, state) for req, c in zip(requests, cedar, strict=True)]


def _cedar(requests: Sequence[Request], state: State) -> list[_Cedar]:
    bundle = state.bundle
    if bundle is None or not bundle.needs_cedar:
        return [_NO_CEDAR] * len(requests)
    cycle = next(iter(state.views.lookup(IN_CYCLE, (None,))), None)
    if cycle is not None:
        # Cedar on all the entities fails on a cycle wherever it is; a slice may not reach it.
        error = (f"{_CYCLE}`{cycle[0]}`",)
        return [_Cedar(True, None, (), error) for _ in requests]
    out = _cedar_union(requests, state, bundle)
    if len(requests) > 1 and any(c.decision is None and c.error is None for c in out):
        # Cedar rejected the union slice's entities: an entity one request pulled in must not
        # fail the others, so decide each request on its own slice.
        return [_cedar_union([r], state, bundle)[0] for r in requests]
    return out


def _cedar_union(requests: Sequence[Request], state: State, bundle: Bundle) -> list[_Cedar]:
    sl = Slice(state.store, state.views, state.memo)
    out: list[_Cedar] = []
    try:
        for req in requests:
            sl.add((req.principal, req.action, req.resource))
            if req.context_refs:
                sl.add(req.context_refs)
        sl.add(bundle.literals)
    except RequestError as exc:
        return [_Cedar(error=str(exc)) for _ in requests]
    with_schema = bundle.schema is not None
    cedar_requests = [
        cedar_request(r.principal, r.action, r.resource, r.context, with_schema) for r in requests
    ]
    counters = state.counters
    counters.cedar_evaluations += len(cedar_requests)
    counters.cedar_calls += 1
    answers = authorize(cedar_requests, bundle.policies, sl.to_json(), bundle.schema)
    size = len(sl)
    for ans in answers:
        if ans.decision == "NoDecision":
            errors = tuple(sorted(ans.errors))
            bad = next((e for e in errors if e.startswith(_BAD_REQUEST)), None)
            out.append(_Cedar(True, None, (), () if bad else errors, None, bad, size))
        else:
            out.append(
                _Cedar(
                    True,
                    ans.decision,
                    tuple(sorted(ans.reasons)),
                    tuple(sorted(ans.errors)),
                    ans.annotations,
                    None,
                    size,
                )
            )
    return out


def _combine(req: Request, cedar: _Cedar, state: State) -> Outcome:
    if cedar.error is not None:
        explanation = {"error": cedar.error} if req.explain else None
        return Outcome(False, (), cedar.errors, cedar.error, explanation)
    row = (req.principal, req.action, req.resource)
    views = state.views
    permit = cedar.decision == "Allow"
    forbid = cedar.decision == "Deny" and bool(cedar.reasons)
    failed = cedar.evaluated and cedar.decision is None  # Cedar could not evaluate: fail closed
    dl_deny = state.has_deny and views.contains(DENY, row)
    if forbid or dl_deny or failed:
        # Denied whatever Datalog's allow says: only an explanation needs it.
        allowed = False
        dl_allow = req.explain and state.has_allow and views.contains(ALLOW, row)
    else:
        dl_allow = state.has_allow and views.contains(ALLOW, row)
        allowed = permit or dl_allow
    if allowed:
        dl = (_dl_reason(state, ALLOW, row),) if dl_allow else ()
        reasons = (_named(cedar) if permit else ()) + dl
    else:
        dl = (_dl_reason(state, DENY, row),) if dl_deny else ()
        reasons = (_named(cedar) if forbid else ()) + dl
    explanation = _explain(req, cedar, state, dl_allow, dl_deny) if req.explain else None
    return Outcome(allowed, reasons, cedar.errors, None, explanation)


def _named(cedar: _Cedar) -> tuple[str, ...]:
    """The determining policies by ``@id`` annotation where they have one."""
    names = cedar.annotations
    if not names:
        return cedar.reasons
    return tuple(sorted(names.get(pid, pid) for pid in cedar.reasons))


def _dl_reason(state: State, relation: str, row: tuple[EntityRef, ...]) -> str:
    base = DATALOG_ALLOW if relation == ALLOW else DATALOG_DENY
    if not state.rule_reasons:
        return base
    derivation = state.views.explain(relation, row)
    line = getattr(derivation, "line", 0)
    return f"{base}@{line}:{getattr(derivation, 'column', 0)}" if line else base


def _explain(
    req: Request, cedar: _Cedar, state: State, dl_allow: bool, dl_deny: bool
) -> dict[str, Any]:
    bundle = state.bundle
    row = (req.principal, req.action, req.resource)
    info = bundle.info if bundle is not None else {}
    cedar_part: dict[str, Any] = {"evaluated": cedar.evaluated}
    if cedar.evaluated:
        applied = [_policy(pid, info, cedar.annotations) for pid in cedar.reasons]
        effect = "permit" if cedar.decision == "Allow" else "forbid"
        cedar_part.update(
            {
                "decision": cedar.decision,
                "determining": applied,
                "errors": list(cedar.errors),
                "slice_entities": cedar.slice_size,
            }
        )
        if not cedar.reasons and cedar.decision is not None:
            cedar_part["not_applicable"] = sorted(
                pid for pid, p in info.items() if not p.is_template
            )
        elif cedar.reasons:
            cedar_part["effect"] = effect
    datalog: dict[str, Any] = {}
    for rel, present, defined in (
        (ALLOW, dl_allow, state.has_allow),
        (DENY, dl_deny, state.has_deny),
    ):
        if not defined:
            datalog[rel] = {"defined": False}
            continue
        result = state.views.explain(rel, row)
        body = result.to_json() if hasattr(result, "to_json") else str(result)
        datalog[rel] = {"holds": present, "explanation": body}
    return {
        "rule": "allow = (cedar permit or datalog allow) and not (cedar forbid or datalog deny)",
        "cedar": cedar_part,
        "datalog": datalog,
    }


def _policy(
    pid: str, info: dict[str, PolicyInfo], annotations: dict[str, str] | None
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": pid, "effect": info[pid].effect if pid in info else None}
    annotation = (annotations or {}).get(pid)
    if annotation is not None:
        out["annotation_id"] = annotation
    return out
