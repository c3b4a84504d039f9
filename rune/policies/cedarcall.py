"""One call into Cedar for a batch of requests, with as little conversion as possible.

``cedarpy.is_authorized_batch`` (the public wrapper) copies every request, serializes the
context with the standard ``json`` module, parses each answer with ``json.loads`` and wraps it
in objects; on a ~60 µs Cedar call that is ~30 µs more. :func:`authorize` calls the extension
function the wrapper calls (``cedarpy._internal.is_authorized_batch``) with the same
arguments the wrapper would pass, and parses the answers with ``orjson``. It falls back to the
public wrapper when the extension function is not there (another cedarpy build); a test
checks that both give the same answers (``tests/policies/test_cedarcall.py``).

Requests are passed as ``{"principal": {"type", "id"}, "action": ..., "resource": ...,
"context": "<JSON>"}``. Without a schema an empty context is left out: Cedar then uses
``Context::empty()``, the same value as parsing ``{}`` without a schema, and skips the parse.
With a schema the context is always passed, because Cedar checks it against the action's
context type while parsing (and its error messages say so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

import cedarpy
import orjson

from rune.ivm.values import EntityRef

__all__ = ["Answer", "authorize", "cedar_request"]


class Answer(NamedTuple):
    decision: str
    """``"Allow"``, ``"Deny"`` or ``"NoDecision"`` (Cedar could not evaluate)."""
    reasons: list[str]
    errors: list[str]
    annotations: dict[str, str]
    """``@id`` annotation of each determining policy that has one."""


_Raw = Callable[[list[dict[str, Any]], Any, str, Any, bool], list[str]]


def _raw_function() -> _Raw | None:
    internal = getattr(cedarpy, "_internal", None)
    fn = getattr(internal, "is_authorized_batch", None)
    return fn if callable(fn) else None


_RAW: Final = _raw_function()


def cedar_request(
    principal: EntityRef,
    action: EntityRef,
    resource: EntityRef,
    context: dict[str, object],
    with_schema: bool,
) -> dict[str, Any]:
    """A request as the extension reads it (uids as ``{"type", "id"}``, context as JSON)."""
    out: dict[str, Any] = {
        "principal": {"type": principal.type, "id": principal.id},
        "action": {"type": action.type, "id": action.id},
        "resource": {"type": resource.type, "id": resource.id},
    }
    if context or with_schema:
        out["context"] = orjson.dumps(context).decode()
    return out


def authorize(
    requests: list[dict[str, Any]],
    policies: cedarpy.PolicySet,
    entities: str,
    schema: cedarpy.Schema | None,
) -> list[Answer]:
    """Evaluate ``requests`` (from :func:`cedar_request`) on the ``entities`` JSON."""
    raw = _RAW
    if raw is None:
        return _public(requests, policies, entities, schema)
    texts = raw(requests, policies, entities, schema, False)
    return [_answer(orjson.loads(text)) for text in texts]


def _answer(obj: dict[str, Any]) -> Answer:
    diag = obj.get("diagnostics") or {}
    return Answer(
        obj["decision"],
        diag.get("reason") or [],
        diag.get("errors") or [],
        diag.get("id_annotations_by_reason") or {},
    )


def _public(
    requests: Sequence[dict[str, Any]],
    policies: cedarpy.PolicySet,
    entities: str,
    schema: cedarpy.Schema | None,
) -> list[Answer]:
    """The same evaluation through cedarpy's public wrapper."""
    plain = [
        {**r, "context": orjson.loads(r["context"])} if "context" in r else r for r in requests
    ]
    out = []
    for res in cedarpy.is_authorized_batch(plain, policies, entities, schema=schema):
        diag = res.diagnostics
        out.append(
            Answer(
                res.decision.value,
                list(diag.reasons),
                list(diag.errors),
                dict(diag.id_annotations_by_reason),
            )
        )
    return out
