"""Consistency tokens: the positions of produced records, for requests that must see them.

A :class:`Token` maps ``topic -> partition -> offset``. A request carrying it
(``"consistency": token.consistency()``) is decided once the service has applied every named
record (``watermark[topic][partition] >= offset``), or denied with ``stale view`` after
``stream.token_wait_s``. Tokens merge by taking the highest offset per partition; only the
fact and policy topics may be named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rune.client.errors import ClientError

__all__ = ["Token"]


@dataclass(frozen=True, slots=True)
class Token:
    """Positions ``{topic: {partition: offset}}`` of acknowledged records (immutable)."""

    offsets: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    @classmethod
    def at(cls, topic: str, partition: int, offset: int) -> Token:
        return cls({topic: {partition: offset}})

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Token:
        """From ``{"at_least": {...}}`` (a request's ``consistency``) or the bare mapping
        ``{topic: {"partition": offset}}`` (a decision's ``watermark``)."""
        raw = value.get("at_least", value) if isinstance(value, Mapping) else None
        if not isinstance(raw, Mapping):
            raise ClientError("a token is {'at_least': {topic: {partition: offset}}}")
        out: dict[str, dict[int, int]] = {}
        try:
            for topic, parts in raw.items():
                out[str(topic)] = {int(p): int(o) for p, o in parts.items()}
        except (AttributeError, TypeError, ValueError):
            raise ClientError("a token is {'at_least': {topic: {partition: offset}}}") from None
        return cls(out)

    def merge(self, other: Token) -> Token:
        """The token covering both (highest offset per partition)."""
        out = {t: dict(p) for t, p in self.offsets.items()}
        for topic, parts in other.offsets.items():
            mine = out.setdefault(topic, {})
            for p, off in parts.items():
                if off > mine.get(p, -1):
                    mine[p] = off
        return Token(out)

    def consistency(self) -> dict[str, Any]:
        """The request field: ``{"at_least": {topic: {"partition": offset}}}``."""
        return {
            "at_least": {
                t: {str(p): o for p, o in sorted(ps.items())} for t, ps in self.offsets.items()
            }
        }

    def satisfied_by(self, watermark: Mapping[str, Mapping[Any, int]]) -> bool:
        """Whether a service at ``watermark`` (a decision's, or a checkpoint's) has applied
        every record the token names."""
        for topic, parts in self.offsets.items():
            seen = watermark.get(topic, {})
            for p, off in parts.items():
                if seen.get(str(p), seen.get(p, -1)) < off:
                    return False
        return True

    def __bool__(self) -> bool:
        return any(self.offsets.values())
