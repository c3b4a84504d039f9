"""Cedar policy text helpers: locate parse errors, read policy metadata from Cedar's JSON form.

cedarpy's parse errors carry no position, so :func:`locate_parse_error` splits the text into
policies at top-level ``;`` (outside strings and comments) and parses them one by one: the
first that fails gives the policy id Cedar would have assigned (``policyN``) and its line:column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cedarpy

from rune.ivm.values import EntityRef

__all__ = ["PolicyInfo", "locate_parse_error", "policy_info"]


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    id: str
    effect: str
    annotation_id: str | None
    is_template: bool


def _statements(text: str) -> Iterator[tuple[str, int, int]]:
    """Yield (statement text, line, column) of each ``;``-terminated policy."""
    i, n = 0, len(text)
    start = None
    line, col = 1, 1
    start_pos = (1, 1)
    while i < n:
        c = text[i]
        if c == "/" and text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        if start is None and not c.isspace():
            start, start_pos = i, (line, col)
        if c == '"':
            i += 1
            col += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                    col += 1
                if i < n and text[i] == "\n":
                    line, col = line + 1, 0
                i += 1
                col += 1
        elif c == ";" and start is not None:
            yield text[start : i + 1], start_pos[0], start_pos[1]
            start = None
        if i < n and text[i] == "\n":
            line, col = line + 1, 1
        else:
            col += 1
        i += 1
    if start is not None:
        yield text[start:], start_pos[0], start_pos[1]


def locate_parse_error(text: str) -> tuple[str, str] | None:
    """``(location, message)`` of the first policy that does not parse, or None."""
    for index, (stmt, line, col) in enumerate(_statements(text)):
        try:
            cedarpy.PolicySet.from_str(stmt)
        except ValueError as exc:
            return f"cedar:policy{index} ({line}:{col})", str(exc)
    return None


def policy_info(est: dict[str, object]) -> tuple[dict[str, PolicyInfo], set[EntityRef]]:
    """Policies (id, effect, @id) and every entity literal of a Cedar JSON (EST) policy set."""
    infos: dict[str, PolicyInfo] = {}
    refs: set[EntityRef] = set()
    for section, is_template in (("staticPolicies", False), ("templates", True)):
        policies = est.get(section) or {}
        assert isinstance(policies, dict)
        for pid, body in policies.items():
            annotations = body.get("annotations") or {}
            annotation = annotations.get("id")
            infos[pid] = PolicyInfo(pid, body.get("effect", ""), annotation, is_template)
            if not is_template:
                _literals(body, refs)
    links = est.get("templateLinks") or []
    assert isinstance(links, list)
    for link in links:
        tmpl = infos.get(link.get("templateId", ""))
        infos[link["newId"]] = PolicyInfo(
            link["newId"], tmpl.effect if tmpl else "", None, is_template=False
        )
        _literals(link.get("values", {}), refs)
        templates = est.get("templates") or {}
        if tmpl is not None and isinstance(templates, dict):
            _literals(templates.get(tmpl.id, {}), refs)
    return infos, refs


def _literals(obj: object, out: set[EntityRef]) -> None:
    """Every ``{"type": T, "id": I}`` object inside ``obj``, whatever key holds it.

    Entity literals appear in a policy's JSON form as ``{"entity": uid}`` (scopes),
    ``{"entities": [uid, ...]}`` (``action in [...]``), ``{"__entity": uid}`` (conditions) and
    as template-link slot values (``{"?principal": uid}`` or ``{"__entity": uid}``); the uid
    itself is always a ``type``/``id`` object. Matching the uid shape rather than the keys
    around it leaves none out; a record literal of that shape is taken as well, which only
    adds an entity to the slices (never wrong, see ``slice.py``).
    """
    if isinstance(obj, dict):
        etype, eid = obj.get("type"), obj.get("id")
        if isinstance(etype, str) and isinstance(eid, str):
            out.add(EntityRef(etype, eid))
        for value in obj.values():
            _literals(value, out)
    elif isinstance(obj, list):
        for item in obj:
            _literals(item, out)
