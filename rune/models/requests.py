"""Zanzibar check requests, decided like any request (request topic, ``/v1/check``).

``{"id": "r-1", "resource": "document:1", "permission": "view", "subject": "user:anne",
"consistency"?: {...}, "explain"?: bool, "tenant"?, "ts"?}``: the decision is a contract-v1
decision record; when allowed its reason is ``zanzibar:document#view``; with ``explain`` its
``explanation`` is ``{"zanzibar": "<the path>"}``. A malformed request or an unknown type or
relation is a deny with an ``error`` (never an exception).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from rune.models.check import ZanzibarView
from rune.models.errors import ModelError
from rune.models.tuples import parse_object, parse_subject
from rune.policies.decide import Outcome

__all__ = ["CHECK_FIELDS", "decide_check", "is_check_request", "validate_check"]

CHECK_FIELDS: Final = frozenset(
    {"id", "resource", "permission", "subject", "consistency", "explain", "tenant", "ts"}
)


def is_check_request(raw: object) -> bool:
    """A Zanzibar check: a request object naming a ``permission``."""
    return isinstance(raw, Mapping) and "permission" in raw


def validate_check(raw: Mapping[str, Any], max_id_chars: int = 256) -> str | None:
    """Why ``raw`` is not a well-formed Zanzibar check (None when it is)."""
    extra = set(raw) - CHECK_FIELDS
    if extra:
        return f"{sorted(extra)[0]}: unknown field"
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > max_id_chars:
        return f"id: a string of 1 to {max_id_chars} characters"
    for name in ("resource", "permission", "subject"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            return f"{name}: a non-empty string is required"
    try:
        parse_object(raw["resource"], "resource")
        parse_subject(raw["subject"], "subject")
    except ModelError as exc:
        return exc.message
    if "explain" in raw and not isinstance(raw["explain"], bool):
        return "explain: must be a boolean"
    return None


def decide_check(view: ZanzibarView, raw: Mapping[str, Any], max_id_chars: int = 256) -> Outcome:
    """Decide one Zanzibar check over ``view``."""
    bad = validate_check(raw, max_id_chars)
    if bad is not None:
        return Outcome(False, (), (), bad)
    resource, permission, subject = raw["resource"], raw["permission"], raw["subject"]
    try:
        allowed = view.check(resource, permission, subject)
        explanation = None
        if raw.get("explain"):
            explanation = {"zanzibar": view.explain(resource, permission, subject)}
    except ModelError as exc:
        return Outcome(False, (), (), exc.message)
    otype = resource.split(":", 1)[0]
    reasons = (f"zanzibar:{otype}#{permission}",) if allowed else ()
    return Outcome(allowed, reasons, (), None, explanation)
