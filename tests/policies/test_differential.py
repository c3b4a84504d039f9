"""Differential test: RUNE's Cedar decisions equal cedarpy's over the FULL entity set.

Hypothesis generates Cedar policy sets (every scope form: ``==``, ``in``, ``action in [..]``,
``is``, ``is .. in``, action groups; ``when``/``unless`` conditions over attributes, records,
sets, tags, context, extension values, ``has``, ``like``, ``if``; ``@id`` annotations; in JSON
form also a template with links), entities with hierarchies (empty, unicode and
control-character ids, duplicate parents, namespaced types, action groups, never-upserted
parents, back edges that close cycles, now and then an attribute Cedar rejects) and a script of
entity upserts, deletes, batches and policy swaps, each followed by checks. The entities reach
RUNE only through ``apply`` / ``apply_batch``, so its long-lived slice memo is exercised across
changes; the reference is ``cedarpy.is_authorized_batch`` on every entity upserted (and not
deleted) so far. For every request RUNE's decision, reasons (policy ids, or their ``@id``) and
number of errors must equal Cedar's, and RUNE must refuse exactly the events whose entities
Cedar refuses (a batch's entities taken together).

The vocabularies (values, condition atoms, scopes) are enumerated once at import, so that a
generated case costs few draws. ``RUNE_DIFF_EXAMPLES`` sets the number of generated cases
(default 5000; tests/README.md has the long run).
"""

from __future__ import annotations

import itertools
import os
import random
from typing import Any

import cedarpy
import orjson
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from rune.authorizer import Authorizer
from rune.policies import EventError

EXAMPLES = int(os.environ.get("RUNE_DIFF_EXAMPLES", "5000"))

Uid = tuple[str, str]

# The pool, in hierarchy order: an entity's parents are later entities (a DAG), but for the
# occasional back edge, which may close a cycle.
POOL: list[Uid] = [
    ("User", "a"),
    ("User", ""),
    ("User", "é👍"),
    ("NS::Thing", "t"),
    ("Doc", "d"),
    ("Doc", "\n\t"),
    ("Action", "open"),
    ("Action", "edit"),
    ("NS::Action", "x"),
    ("Group", "g"),
    ("Group", "\x00"),
    ("Group", 'q"\\'),
    ("Folder", "f"),
    ("Action", "viewing"),
    ("Action", "other"),
    ("Folder", "F"),
    ("Action", "all"),
]
GHOST: Uid = ("User", "ghost")  # never upserted: only ever referenced
REFS = [*POOL, GHOST]
ACTION_TYPES = ("Action", "NS::Action")
ACTIONS = [u for u in POOL if u[0] in ACTION_TYPES]
CONTAINERS = [u for u in POOL[9:] if u[0] in ("Group", "Folder")]
PRINCIPALS = [u for u in POOL if u[0] in ("User", "Group")]
RESOURCES = [u for u in POOL if u[0] in ("Doc", "Folder", "NS::Thing")]
TYPES = ["User", "Group", "Doc", "Folder", "NS::Thing", "Action", "NS::Action"]
STRINGS = ["", "a", "ab", "é👍", "a*b", "\x00", "line\nbreak", 'q"\\']
PATTERNS = ["*", "a*", "*b", "a\\*b", "é*", "", "\x00*", "*\n*"]
IPS = ["10.0.0.1", "192.168.0.0/16", "::1", "127.0.0.1"]
DECIMALS = ["1.5", "-0.0001", "922337203685477.5807"]
DATETIMES = ["2024-10-15", "2024-10-15T11:35:00Z", "1970-01-01"]
DURATIONS = ["1h", "-2d", "1h30m"]


def cedar_string(s: str) -> str:
    """A Cedar string literal (quotes, backslashes and non-printable characters escaped)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{{{ord(ch):x}}}")
    return '"' + "".join(out) + '"'


def cedar_pattern(s: str) -> str:
    """A ``like`` pattern literal (``\\*`` stays an escaped star)."""
    return '"' + "\\*".join(cedar_string(p)[1:-1] for p in s.split("\\*")) + '"'


def literal(u: Uid) -> str:
    return f"{u[0]}::{cedar_string(u[1])}"


def uid_json(u: Uid) -> dict[str, str]:
    return {"type": u[0], "id": u[1]}


# -- Cedar JSON values (attributes, tags, context) ------------------------------------------


def _extn(fn: str, arg: str) -> dict[str, Any]:
    return {"__extn": {"fn": fn, "arg": arg}}


ENTITY_VALUES: list[Any] = [{"__entity": uid_json(u)} for u in REFS] + [
    uid_json(u)
    for u in REFS[::4]  # a record without a schema
]
EXTENSIONS: list[Any] = (
    [_extn("ip", a) for a in IPS]
    + [_extn("decimal", d) for d in DECIMALS]
    + [_extn("datetime", d) for d in DATETIMES]
    + [_extn("duration", d) for d in DURATIONS]
)
SCALARS: list[Any] = [True, False, -1, 0, 2, 3, 2**63 - 1, -(2**63), *STRINGS]
ENTITY_SETS: list[Any] = [
    [],
    *([a, b] for a, b in zip(ENTITY_VALUES[::3], ENTITY_VALUES[1::3], strict=False)),
    ENTITY_VALUES[:3],
    [ENTITY_VALUES[9], ENTITY_VALUES[9]],
]
WILD: list[Any] = [
    *SCALARS,
    *EXTENSIONS,
    [1, "a", True],
    [[1], {"e": ENTITY_VALUES[0]}],
    {},
    {"e": ENTITY_VALUES[9], "n": 1},
    {"r": {"e": ENTITY_VALUES[12]}, "type": "User"},
]
TYPED: dict[str, list[Any]] = {
    "owner": ENTITY_VALUES,
    "level": [-1, 0, 1, 2, 3, 4],
    "name": STRINGS,
    "members": ENTITY_SETS,
    "addr": [_extn("ip", a) for a in IPS],
    "limit": [_extn("decimal", d) for d in DECIMALS],
    "rec": [{"e": e} for e in ENTITY_VALUES] + [{"e": ENTITY_VALUES[0], "n": 2}],
    "when": [_extn("datetime", d) for d in DATETIMES],
    "flag": [True, False],
}
ATTRS = list(TYPED)


def _records(seed: int, n: int, fields: dict[str, list[Any]], most: int) -> list[dict[str, Any]]:
    """``n`` records of up to ``most`` of ``fields`` (plus the empty one), drawn once with a
    fixed seed: a generated case then picks one in a single draw."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = [{}]
    for _ in range(n):
        names = rng.sample(list(fields), rng.randint(1, most))
        out.append({k: rng.choice(fields[k] if rng.random() < 0.75 else WILD) for k in names})
    return out


ATTR_SETS = _records(1, 400, TYPED, 5)
TAG_SETS = _records(2, 60, {"k": ENTITY_VALUES + WILD, "t": ENTITY_VALUES}, 2)
CONTEXTS = _records(
    3,
    300,
    {
        "who": ENTITY_VALUES,
        "set": ENTITY_SETS,
        "ip": TYPED["addr"],
        "n": [0, 1, 2, 3],
        "rec": TYPED["rec"],
        "s": STRINGS,
    },
    4,
)
attrs = st.sampled_from(ATTR_SETS)
tags = st.sampled_from([None] * len(TAG_SETS) + TAG_SETS)
context = st.sampled_from(CONTEXTS)


def rarely(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (``integers(0, n) == 0`` would be far more often:
    Hypothesis favours boundary values)."""
    return st.sampled_from([False] * (n - 1) + [True])


def _kin(u: Uid) -> list[Uid]:
    """The pool entries that may be parents of ``u`` (Cedar takes only actions as the
    parents of an action), in hierarchy order."""
    return [v for v in POOL if (v[0] in ACTION_TYPES) == (u[0] in ACTION_TYPES)]


def _up(u: Uid) -> st.SearchStrategy[list[Uid]]:
    later = _kin(u)[_kin(u).index(u) + 1 :]
    later += [v for v in later if v in CONTAINERS] * 2  # groups and folders more often
    return st.lists(st.sampled_from(later), max_size=3) if later else st.just([])


_UP = [_up(u) for u in POOL]
_BACK = [st.sampled_from(_kin(u)[: _kin(u).index(u) + 1]) for u in POOL]
_STRAY = [rarely(40 if u[0] in ACTION_TYPES else 10) for u in POOL]


@st.composite
def entity(draw: st.DrawFn) -> dict[str, Any]:
    i = draw(st.integers(0, len(POOL) - 1))
    parents = list(draw(_UP[i]))
    if draw(rarely(40)):  # a back edge (or a self edge): may close a cycle
        parents.append(draw(_BACK[i]))
    if draw(rarely(8)) and parents:  # a duplicate parent
        parents.append(parents[0])
    if draw(_STRAY[i]):  # a parent never upserted (for an action, one that Cedar refuses)
        parents.append(GHOST)
    out: dict[str, Any] = {
        "uid": uid_json(POOL[i]),
        "attrs": dict(draw(attrs)),
        "parents": [uid_json(p) for p in parents],
    }
    t = draw(tags)
    if t is not None:
        out["tags"] = t
    if draw(rarely(64)):  # an extension value Cedar refuses
        out["attrs"]["addr"] = _extn("ip", "not an ip")
    return out


upsert = entity().map(lambda e: {"op": "upsert", "entity": e})
delete = st.sampled_from(POOL).map(lambda u: {"op": "delete", "entity": {"uid": uid_json(u)}})
entity_event = st.one_of(upsert, upsert, delete)

# -- policies -------------------------------------------------------------------------------

LITS = [literal(u) for u in REFS]
ENT_EXPRS = [
    "principal",
    "action",
    "resource",
    "context.who",
    "context.rec.e",
    "principal.owner",
    "resource.owner",
    "principal.rec.e",
    'resource.getTag("t")',
    *LITS[::2],
]
SET_EXPRS = [
    "[]",
    "resource.members",
    "principal.members",
    "context.set",
    *("[" + ", ".join(LITS[i : i + k]) + "]" for i, k in ((9, 2), (12, 3), (0, 1), (13, 2))),
]
TARGETS = ENT_EXPRS + SET_EXPRS + [literal(u) for u in CONTAINERS]


def _atoms() -> list[str]:
    out: list[str] = []
    for e, t in itertools.product(ENT_EXPRS, TARGETS):
        out += [f"{e} in {t}", f"{e} is {TYPES[len(out) % len(TYPES)]} in {t}"]
    for e in ENT_EXPRS:
        out += [f"{e} == {x}" for x in ENT_EXPRS[::3]]
        out += [f"{e} is {t}" for t in TYPES]
        out += [f"{e} has {a}" for a in ATTRS]
        out += [f"({e} has owner && {e}.owner in {t})" for t in TARGETS[::4]]
        out += [
            f"{e}.level > 1",
            f"{e}.flag",
            f"{e}.members.contains({ENT_EXPRS[len(out) % len(ENT_EXPRS)]})",
            f"{e}.members.containsAny({SET_EXPRS[len(out) % len(SET_EXPRS)]})",
            f"{e}.rec == {{e: {ENT_EXPRS[len(out) % len(ENT_EXPRS)]}}}",
            f'{e}.addr.isInRange(ip("10.0.0.0/8"))',
            f"{e}.addr.isLoopback()",
            f'{e}.limit.lessThan(decimal("1.5"))',
            f'{e}.when < datetime("2024-10-15")',
            f'datetime("2024-10-15").offset(duration("1h")) > {e}.when',
            f'{e}.hasTag("k")',
            f'{e}.getTag("k") == {ENT_EXPRS[len(out) % len(ENT_EXPRS)]}',
        ]
        out += [f"{e}.name like {cedar_pattern(p)}" for p in PATTERNS]
        out += [f"{e}.name == {cedar_string(s)}" for s in STRINGS[::2]]
    out += [f"{s}.containsAll({t})" for s, t in itertools.product(SET_EXPRS, SET_EXPRS)]
    out += [f"context.s like {cedar_pattern(p)}" for p in PATTERNS]
    out += ["context has who", "context.n > 1", 'context.ip.isInRange(ip("10.0.0.0/8"))']
    out += ["true", "false"] * 20
    return out


ATOMS = _atoms()
atom = st.sampled_from(ATOMS)
condition = st.one_of(
    atom,
    atom,
    atom.map("!({})".format),
    st.builds("({} && {})".format, atom, atom),
    st.builds("({} || {})".format, atom, atom),
    st.builds("(if {} then {} else {})".format, atom, atom, atom),
)


def _scopes(var: str, pool: list[Uid], types: list[str]) -> list[str]:
    """Scope forms, weighted so that a policy applies often enough: unconstrained ~40%,
    ``in`` ~35%, ``==``, ``is`` and ``is .. in`` the rest."""
    ins = [f"{var} in {literal(u)}" for u in CONTAINERS + pool]
    out = [f"{var} == {literal(u)}" for u in [*pool, GHOST]]
    out += [f"{var} is {t}" for t in types + TYPES]
    out += [f"{var} is {t} in {literal(u)}" for t, u in zip(types * 4, CONTAINERS, strict=False)]
    return [var] * (len(ins) + len(out)) + ins * 2 + out


ACTION_SCOPES = [f"action == {literal(u)}" for u in ACTIONS]
ACTION_SCOPES += [f"action in {literal(u)}" for u in ACTIONS]
ACTION_SCOPES += [
    "action in [" + ", ".join(literal(u) for u in group) + "]"
    for k in (0, 1, 2, 3)
    for group in itertools.combinations(ACTIONS[::-1], k)
]
ACTION_SCOPES += ["action"] * len(ACTION_SCOPES)
principal_scope = st.sampled_from(_scopes("principal", PRINCIPALS, ["User", "Group"]))
resource_scope = st.sampled_from(_scopes("resource", RESOURCES, ["Doc", "Folder"]))
action_scope = st.sampled_from(ACTION_SCOPES)


clauses = st.lists(st.tuples(st.sampled_from(["when", "unless"]), condition), max_size=2)


@st.composite
def policy(draw: st.DrawFn) -> tuple[str, str | None]:
    """One policy's text and its ``@id`` annotation (or None)."""
    annotation = draw(st.sampled_from([None, None, None, "ro", "rw", "é"]))
    effect = draw(st.sampled_from(["permit", "permit", "permit", "permit", "forbid"]))
    head = f"{effect}({draw(principal_scope)}, {draw(action_scope)}, {draw(resource_scope)})"
    conditions = draw(clauses)
    body = "".join(f" {kind} {{ {c} }}" for kind, c in conditions)
    prefix = f"@id({cedar_string(annotation)}) " if annotation is not None else ""
    return prefix + head + body + ";", annotation


TEMPLATE = orjson.loads(
    cedarpy.policies_to_json_str(
        "permit(principal in ?principal, action, resource in ?resource)"
        ' when { resource has owner && resource.owner in Group::"g" };'
    )
)["templates"]["policy0"]


_links = st.lists(st.tuples(st.sampled_from(REFS), st.sampled_from(REFS)), max_size=2)


@st.composite
def policy_set(draw: st.DrawFn) -> tuple[str | dict[str, Any], dict[str, str]]:
    """A bundle's ``cedar`` (text, or the JSON form with a linked template) and the ``@id``
    annotation of each policy id that has one."""
    drawn = draw(st.lists(policy(), min_size=1, max_size=4))
    text = "\n".join(t for t, _ in drawn)
    names = {f"policy{i}": a for i, (_, a) in enumerate(drawn) if a is not None}
    if not draw(rarely(4)):
        return text, names
    est: dict[str, Any] = orjson.loads(cedarpy.policies_to_json_str(text))
    est["templates"] = {"t0": TEMPLATE}
    links = draw(_links)
    est["templateLinks"] = [
        {
            "templateId": "t0",
            "newId": f"link{i}",
            "values": {  # both spellings of a uid
                "?principal": {"__entity": uid_json(p)} if i else uid_json(p),
                "?resource": uid_json(r),
            },
        }
        for i, (p, r) in enumerate(links)
    ]
    return est, names


# -- requests and the script ----------------------------------------------------------------

request = st.builds(
    lambda p, a, r, c: {
        "principal": uid_json(p),
        "action": uid_json(a),
        "resource": uid_json(r),
        "context": c,
    },
    st.sampled_from(PRINCIPALS * 4 + REFS),
    st.sampled_from(ACTIONS * 4 + REFS),
    st.sampled_from(RESOURCES * 4 + REFS),
    context,
)
update = st.sampled_from(["apply"] * 6 + ["batch"] * 4 + ["swap"]).flatmap(
    lambda kind: (
        st.just((kind, None))
        if kind == "swap"
        else entity_event.map(lambda e: (kind, e))
        if kind == "apply"
        else st.lists(entity_event, min_size=1, max_size=4).map(lambda b: (kind, b))
    )
)
checks = st.one_of(
    request.map(lambda r: ("check", [r])),
    st.lists(request, min_size=2, max_size=4).map(lambda rs: ("check", rs)),
)
script = st.lists(st.tuples(update, checks), min_size=1, max_size=8).map(
    lambda steps: [s for pair in steps for s in pair]
)


def _policies(cedar: str | dict[str, Any]) -> cedarpy.PolicySet:
    if isinstance(cedar, dict):
        return cedarpy.PolicySet.from_json_str(orjson.dumps(cedar).decode())
    return cedarpy.PolicySet.from_str(cedar)


def _cedar_accepts(entities: dict[Uid, dict[str, Any]]) -> bool:
    try:
        cedarpy.Entities.from_json_str(orjson.dumps(list(entities.values())).decode(), None)
    except ValueError:
        return False
    return True


def _after(model: dict[Uid, dict[str, Any]], events: list[dict[str, Any]]) -> dict[Uid, Any]:
    out = dict(model)
    for e in events:
        u = (e["entity"]["uid"]["type"], e["entity"]["uid"]["id"])
        if e["op"] == "upsert":
            out[u] = e["entity"]
        else:
            out.pop(u, None)
    return out


def _expected(answer: Any, names: dict[str, str]) -> tuple[str, list[str], int]:
    decision = "allow" if answer.decision == cedarpy.Decision.Allow else "deny"
    reasons = sorted(names.get(pid, pid) for pid in answer.diagnostics.reasons)
    return decision, reasons, len(answer.diagnostics.errors)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # explain: minutes
)
@given(
    st.lists(policy_set(), min_size=1, max_size=2),
    st.lists(upsert, min_size=2, max_size=8),
    script,
    st.booleans(),
)
def test_rune_decides_as_cedar_on_all_entities(
    bundles: list[tuple[str | dict[str, Any], dict[str, str]]],
    start: list[dict[str, Any]],
    steps: list[tuple[str, Any]],
    cached: bool,
) -> None:
    az = Authorizer(cache_entries=100 if cached else 0)
    version, current = 1, 0
    cedar, names = bundles[0]
    az.load_bundle({"version": version, "cedar": cedar})
    policies = _policies(cedar)
    model: dict[Uid, dict[str, Any]] = {}
    for kind, arg in [("apply", e) for e in start] + steps:
        if kind in ("apply", "batch"):
            events = [arg] if kind == "apply" else arg
            after = _after(model, events)
            upserted = _after({}, events)  # the entities the event leaves, netted
            try:
                az.apply(arg) if kind == "apply" else az.apply_batch(arg)
            except EventError as exc:
                assert not _cedar_accepts(upserted), f"RUNE refused what Cedar accepts: {exc}"
                event("an event refused (Cedar refuses it too)")
                continue
            assert _cedar_accepts(upserted), "RUNE took entities that Cedar refuses"
            model = after
        elif kind == "swap":
            version, current = version + 1, (current + 1) % len(bundles)
            cedar, names = bundles[current]
            az.load_bundle({"version": version, "cedar": cedar})
            policies = _policies(cedar)
        else:
            entities = orjson.dumps(list(model.values())).decode()
            ids = [{**r, "id": f"r{i}"} for i, r in enumerate(arg)]
            ours = az.check_batch(ids) if len(ids) > 1 else [az.check(ids[0])]
            theirs = cedarpy.is_authorized_batch(arg, policies, entities)
            for r, mine, answer in zip(arg, ours, theirs, strict=True):
                want = _expected(answer, names)
                got = (mine["decision"], mine["reasons"], len(mine["errors"]))
                assert "error" not in mine, (r, mine)
                assert got == want, (r, mine, answer.diagnostics.errors)
                event(f"Cedar {answer.decision.value}" + (" with errors" if want[2] else ""))
