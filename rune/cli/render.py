"""Human-readable explanations of decisions (``rune explain``, ``rune test``): which side
decided, the Cedar policies with their text, the Datalog derivation trees or the rules tried
and where they failed."""

from __future__ import annotations

import textwrap
from typing import Any

import cedarpy
import orjson

from rune.authorizer import Authorizer
from rune.policies.bundle import Bundle
from rune.policies.errors import RequestError
from rune.policies.uids import parse_uid

__all__ = ["render_explanation"]


def _policy_name(pid: str, bundle: Bundle | None) -> str:
    info = bundle.info.get(pid) if bundle is not None else None
    if info is not None and info.annotation_id is not None:
        return f'{pid} @id("{info.annotation_id}")'
    return pid


def _policy_text(pid: str, bundle: Bundle | None) -> str | None:
    """The static policy ``pid`` as Cedar text (Cedar's own formatting), when available."""
    if bundle is None:
        return None
    try:
        cedar = bundle.cedar
        est: Any = (
            orjson.loads(cedarpy.policies_to_json_str(cedar)) if isinstance(cedar, str) else cedar
        )
        body = est.get("staticPolicies", {}).get(pid)
        if body is None:
            return None
        one = {"staticPolicies": {pid: body}, "templates": {}, "templateLinks": []}
        text: str = cedarpy.policies_from_json_str(orjson.dumps(one).decode())
        return text.strip()
    except Exception:  # the text is a courtesy; the id is what matters
        return None


def _why(decision: dict[str, Any], expl: dict[str, Any], bundle: Bundle | None) -> str:
    cedar = expl.get("cedar", {})
    datalog = expl.get("datalog", {})
    applied = ", ".join(_policy_name(p["id"], bundle) for p in cedar.get("determining", []))
    permits = [f"Cedar permit {applied} applies"] if cedar.get("decision") == "Allow" else []
    forbids = [f"Cedar forbid {applied} applies"] if cedar.get("effect") == "forbid" else []
    if datalog.get("allow", {}).get("holds"):
        permits.append("Datalog derives allow")
    if datalog.get("deny", {}).get("holds"):
        forbids.append("Datalog derives deny")
    if cedar.get("evaluated") and cedar.get("decision") is None:
        forbids.append("Cedar could not evaluate the request (fail closed)")
    if decision["decision"] == "allow":
        return f"allowed: {' and '.join(permits)}; nothing forbids it"
    if forbids:
        overridden = f", overriding: {' and '.join(permits)}" if permits else ""
        return f"denied: {' and '.join(forbids)}{overridden}"
    return "denied: nothing allows it (no Cedar permit applies, Datalog does not derive allow)"


def _render_cedar(cedar: dict[str, Any], bundle: Bundle | None) -> list[str]:
    if not cedar.get("evaluated"):
        return ["Cedar: not evaluated (the bundle has no Cedar policies and no schema)"]
    size = cedar.get("slice_entities", 0)
    head = f"Cedar (on a slice of {size} entities):"
    decision = cedar.get("decision")
    lines: list[str] = []
    if decision is None:
        lines.append(f"{head} could not evaluate the request (fail closed)")
    elif cedar.get("determining"):
        lines.append(f"{head} {decision}")
        for policy in cedar["determining"]:
            lines.append(f"  {policy['effect']} {_policy_name(policy['id'], bundle)} applies")
            text = _policy_text(policy["id"], bundle)
            if text:
                lines.append(textwrap.indent(text, "    "))
    else:
        lines.append(f"{head} no policy applies")
    if cedar.get("not_applicable"):
        names = ", ".join(_policy_name(p, bundle) for p in cedar["not_applicable"])
        lines.append(f"  not applicable: {names}")
    if cedar.get("errors"):
        lines.append("  errors (an erroring policy does not apply):")
        lines.extend(f"    {e}" for e in cedar["errors"])
    return lines


def _render_datalog(az: Authorizer, request: dict[str, Any], datalog: dict[str, Any]) -> list[str]:
    """Datalog's allow and deny, rendered by the engine's own explanation renderers."""
    try:
        row = tuple(
            parse_uid(request[k], k, RequestError) for k in ("principal", "action", "resource")
        )
    except (KeyError, RequestError):  # pragma: no cover - a decided request has all three
        return []
    lines: list[str] = []
    rendered = False
    for relation in ("allow", "deny"):
        part = datalog.get(relation)
        if part is None:
            continue
        if part.get("defined") is False:
            lines.append(f"Datalog {relation}: not defined by the bundle")
            continue
        lines.append(f"Datalog {relation}: {'holds' if part['holds'] else 'does not hold'}")
        result = az.engine.explain(relation, row)
        text = result.render() if hasattr(result, "render") else f"{result}\n"
        lines.append(textwrap.indent(text.rstrip("\n"), "  "))
        rendered = True
    bundle = az.bundle
    if rendered and bundle is not None:
        own = len(bundle.datalog.splitlines())
        lines.append(
            f"(line:column refer to the bundle's Datalog; lines after {own} are RUNE's "
            "built-in rules, see docs/authorizer.md)"
        )
    return lines


def render_explanation(az: Authorizer, request: dict[str, Any], decision: dict[str, Any]) -> str:
    """The decision and its explanation as text (``rune explain``)."""
    bundle = az.bundle
    lines = [
        f"{decision['id']}: {decision['decision'].upper()}"
        f"  (policy version {decision['policy_version']})"
    ]
    expl = decision.get("explanation")
    if "error" in decision:
        lines.append(f"  the request could not be evaluated: {decision['error']}")
        return "\n".join(lines)
    if not isinstance(expl, dict):  # pragma: no cover - explain was asked for
        return "\n".join(lines)
    lines.append(f"  {_why(decision, expl, bundle)}")
    if decision["reasons"]:
        lines.append(f"  reasons: {', '.join(decision['reasons'])}")
    lines.append(f"  rule: {expl['rule']}")
    lines.append("")
    lines.extend(_render_cedar(expl.get("cedar", {}), bundle))
    datalog = _render_datalog(az, request, expl.get("datalog", {}))
    if datalog:
        lines.append("")
        lines.extend(datalog)
    return "\n".join(lines)


# -- rune benchmark -------------------------------------------------------------------------
