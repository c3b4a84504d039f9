"""``Decision``: one answered request, the value every path (Kafka, HTTP, CLI) passes on.

Immutable: the audit step returns shaped copies (``_replace``), it never edits one in place.
``to_json`` is the record of contract v1 (the decision topic, HTTP responses, ``rune run``)::

    {"id": "r-1", "decision": "allow", "reasons": [...], "errors": [...],
     "policy_version": 7, "watermark": {"rune.facts": {"0": 1240}}, "latency_us": 85}

plus ``error`` when the request could not be decided as asked, ``explanation`` when asked
for, and ``request`` (principal, action, resource) when the audit settings add it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import orjson

__all__ = ["MAX_DECISION_BYTES", "Decision", "Watermark"]

MAX_DECISION_BYTES: Final = 900 * 1024
"""A decision record stays below Kafka's default ``message.max.bytes`` (1 MiB)."""

Watermark = Mapping[str, Mapping[str, int]]
"""Applied positions ``{topic: {partition: offset}}``; a decision's is a snapshot shared by
the decisions of one step (never changed after it is handed out)."""


class Decision(NamedTuple):
    """A decision of contract v1 (a named tuple: built once per request on the hot path)."""

    id: str | None
    allowed: bool
    reasons: tuple[str, ...]
    errors: tuple[str, ...]
    policy_version: int | None
    watermark: Watermark
    latency_us: int
    error: str | None = None
    """Why the request was not decided as asked (bad request, stale view, no bundle...)."""
    explanation: Mapping[str, Any] | None = None
    request: Mapping[str, Any] | None = None
    """Principal, action and resource, when ``logging.include_request`` asks for them."""

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"

    def to_json(self) -> dict[str, Any]:
        """The contract-v1 record as a JSON-ready dict of its own (changing it changes no
        other decision)."""
        out = _record(self)
        out["watermark"] = {t: dict(p) for t, p in self.watermark.items()}
        return out

    def encode(self, max_bytes: int = MAX_DECISION_BYTES) -> bytes:
        """The record as JSON bytes; an explanation that would make it larger than
        ``max_bytes`` is dropped (and said so in ``error``) rather than failing the produce.

        The plain decision (no error, explanation or request) is written from a template
        whose ``policy_version``/``watermark`` part is shared by the decisions of a step:
        the same bytes as ``orjson.dumps(to_json())``, at a third of the cost."""
        if self.error is None and self.explanation is None and self.request is None:
            raw = _PLAIN % (
                orjson.dumps(self.id),
                b"allow" if self.allowed else b"deny",
                orjson.dumps(self.reasons) if self.reasons else b"[]",
                orjson.dumps(self.errors) if self.errors else b"[]",
                _tail(self.policy_version, self.watermark),
                self.latency_us,
            )
        else:
            raw = orjson.dumps(_record(self))
        if len(raw) <= max_bytes:
            return raw
        note = f"explanation dropped: the decision would be {len(raw)} bytes"
        error = f"{self.error}; {note}" if self.error else note
        slim = orjson.dumps(_record(self._replace(explanation=None, error=error[:4096])))
        if len(slim) <= max_bytes:
            return slim
        note = f"reasons and errors dropped: the decision would be {len(slim)} bytes"
        bare = self._replace(explanation=None, reasons=(), errors=(), error=note, request=None)
        return orjson.dumps(_record(bare))

    def key(self) -> bytes | None:
        """The record key on the decision topic: the request id."""
        return self.id.encode() if self.id is not None else None


def _record(d: Decision) -> dict[str, Any]:
    """The record of ``d``; its ``watermark`` is shared with other decisions (read only)."""
    out: dict[str, Any] = {
        "id": d.id,
        "decision": "allow" if d.allowed else "deny",
        "reasons": list(d.reasons),
        "errors": list(d.errors),
        "policy_version": d.policy_version,
        "watermark": d.watermark,
        "latency_us": d.latency_us,
    }
    if d.error is not None:
        out["error"] = d.error
    if d.explanation is not None:
        out["explanation"] = d.explanation
    if d.request is not None:
        out["request"] = d.request
    return out


_PLAIN: Final = b'{"id":%b,"decision":"%b","reasons":%b,"errors":%b,%b,"latency_us":%d}'
_last_tail: tuple[object, object, bytes] = (None, None, b"")


def _tail(version: int | None, watermark: Watermark) -> bytes:
    """``"policy_version":V,"watermark":{...}``, remembered for the last watermark seen (a
    step's decisions share one; the entry holds it, so its identity cannot be reused)."""
    global _last_tail
    seen_watermark, seen_version, tail = _last_tail
    if seen_watermark is watermark and seen_version == version:
        return tail
    tail = b'"policy_version":%b,"watermark":%b' % (orjson.dumps(version), orjson.dumps(watermark))
    _last_tail = (watermark, version, tail)
    return tail
