"""What happens to every decision besides its delivery: counted and timed (metrics), one
structured log line (``logging.decisions``), and the audit shape of the record itself
(``logging.include_request``: principal, action and resource in the decision record;
``logging.pseudonymize``: the principal's id replaced by a keyed hash wherever it appears in
the log line and the record).

Pseudonyms are ``HMAC-SHA256(key, type + "\\x1f" + id)`` in hex (first 32 digits), so the same
principal gets the same pseudonym across records (auditors can still correlate), and nobody
without the key can recompute or reverse it. Rotating the key changes every pseudonym.
Pitfall: ids quoted inside free text other than the ``Type::"id"`` form (e.g. a Cedar error
message naming an attribute value) are not recognised.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from rune.config import Logging
from rune.ops.metrics import Metrics
from rune.policies.decision import Decision

__all__ = ["Audit", "Pseudonymizer"]


class Pseudonymizer:
    """Keyed pseudonyms; the most recent ``CACHE`` are remembered (HMAC costs ~2 µs)."""

    CACHE = 65_536

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._known: dict[tuple[str, str], str] = {}

    def pseudonym(self, entity_type: str, entity_id: str) -> str:
        known = self._known.get((entity_type, entity_id))
        if known is not None:
            return known
        digest = hmac.new(
            self._key, f"{entity_type}\x1f{entity_id}".encode(), hashlib.sha256
        ).hexdigest()[:32]
        if len(self._known) >= self.CACHE:
            self._known.clear()
        self._known[(entity_type, entity_id)] = digest
        return digest

    def scrub(self, value: Any, entity_type: str, entity_id: str) -> Any:
        """``value`` (JSON) with the entity ``entity_type::entity_id`` pseudonymized:
        entity references ``{"type", "id"}`` and ``Type::"id"`` text."""
        alias = self.pseudonym(entity_type, entity_id)
        text = f'{entity_type}::"{entity_id}"'
        alias_text = f'{entity_type}::"{alias}"'

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return v.replace(text, alias_text) if text in v else v
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, dict):
                if v.get("type") == entity_type and v.get("id") == entity_id:
                    return {**v, "id": alias}
                return {k: walk(x) for k, x in v.items()}
            return v

        return walk(value)


def _uid(raw: Any) -> dict[str, str] | None:
    if isinstance(raw, Mapping):
        if "__entity" in raw:
            raw = raw["__entity"]
        if isinstance(raw, Mapping):
            t, i = raw.get("type"), raw.get("id")
            if isinstance(t, str) and isinstance(i, str):
                return {"type": t, "id": i}
    return None


class Audit:
    """Applies the logging settings to decisions; ``configure`` swaps settings (reload)."""

    def __init__(self, cfg: Logging, metrics: Metrics) -> None:
        self.metrics = metrics
        self._log = structlog.get_logger("rune.decisions")
        self._children: dict[tuple[str, str], Any] = {}
        self.configure(cfg)

    def configure(self, cfg: Logging) -> None:
        self.cfg = cfg
        key = cfg.pseudonym_key.get_secret_value().encode()
        self.pseudonymizer = Pseudonymizer(key) if cfg.pseudonymize else None

    def decided(
        self, requests: Sequence[Any], decisions: Sequence[Decision], source: str
    ) -> list[Decision]:
        """Count and log ``decisions``; return them shaped for the record (pseudonyms, the
        request's uids), as new values. ``requests[i]`` is the raw request ``decisions[i]``
        answers."""
        if not decisions:
            return []
        m = self.metrics
        allowed = sum(d.allowed for d in decisions)
        if allowed:
            self._counter("allow", source).inc(allowed)
        if allowed < len(decisions):
            self._counter("deny", source).inc(len(decisions) - allowed)
        m.latency.observe_many(source, [d.latency_us / 1e6 for d in decisions])
        cfg = self.cfg
        log_all = cfg.decisions == "all"
        log_deny = cfg.decisions == "deny"
        pseudo = self.pseudonymizer
        if not (cfg.include_request or pseudo is not None or log_all) and (
            not log_deny or allowed == len(decisions)
        ):
            return list(decisions)
        return [
            self._shaped(raw, d, source, log_all or (log_deny and not d.allowed))
            for raw, d in zip(requests, decisions, strict=True)
        ]

    def _shaped(self, raw: Any, d: Decision, source: str, log: bool) -> Decision:
        cfg = self.cfg
        pseudo = self.pseudonymizer
        if not (cfg.include_request or pseudo is not None or log):
            return d
        req = raw if isinstance(raw, Mapping) else {}
        principal = _uid(req.get("principal"))
        action = _uid(req.get("action"))
        resource = _uid(req.get("resource"))
        if pseudo is not None and principal is not None:
            t, i = principal["type"], principal["id"]
            d = d._replace(
                reasons=tuple(pseudo.scrub(list(d.reasons), t, i)),
                errors=tuple(pseudo.scrub(list(d.errors), t, i)),
                error=pseudo.scrub(d.error, t, i),
                explanation=pseudo.scrub(d.explanation, t, i),
            )
            principal = {"type": t, "id": pseudo.pseudonym(t, i)}
        if cfg.include_request:
            d = d._replace(request={"principal": principal, "action": action, "resource": resource})
        if log:
            self._log.info(
                "decision",
                request_id=d.id,
                principal=principal,
                action=action,
                resource=resource,
                decision=d.decision,
                latency_us=d.latency_us,
                policy_version=d.policy_version,
                source=source,
                error=d.error,
            )
        return d

    def _counter(self, outcome: str, source: str) -> Any:
        child = self._children.get((outcome, source))
        if child is None:
            child = self._children[(outcome, source)] = self.metrics.requests.labels(
                outcome, source
            )
        return child
