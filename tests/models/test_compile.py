"""The compilers: errors with line:column, readable output, and incremental views equal to
views evaluated from scratch over random relationship streams."""

from __future__ import annotations

import random

import pytest

from rune.ivm import Engine
from rune.models import (
    ModelSyntaxError,
    ModelValidationError,
    UnsupportedFeatureError,
    ZanzibarView,
    compile_openfga,
    compile_spicedb,
    parse_relationship,
)

SCHEMA = """
definition user {}
definition group {
  relation member: user | group#member | user:*
}
definition folder {
  relation parent: folder
  relation viewer: user | group#member | user:*
  relation banned: user | group#member
  permission view = (viewer - banned) + parent->view
}
definition document {
  relation parent: folder
  relation owner: user
  relation reader: user | group#member | user:*
  permission both = reader & owner
  permission view = reader + owner + parent->view
  permission limited = view - owner
}
"""


def test_syntax_errors_have_line_and_column() -> None:
    with pytest.raises(ModelSyntaxError) as err:
        compile_spicedb("definition user {}\ndefinition doc {\n  relation viewer user\n}")
    assert (err.value.line, err.value.column) == (3, 19)
    with pytest.raises(ModelValidationError, match="has no relation or permission 'nope'"):
        compile_spicedb("definition doc {\n  permission view = nope\n}")
    with pytest.raises(UnsupportedFeatureError, match="caveat"):
        compile_spicedb("definition user {}\ndefinition d {\n relation v: user with weekday\n}")
    with pytest.raises(ModelSyntaxError) as err:
        compile_openfga("model\n  schema 1.1\ntype doc\n  relations\n    define v: [user] or\n")
    assert err.value.line == 6
    with pytest.raises(UnsupportedFeatureError, match="conditions"):
        compile_openfga(
            "model\n  schema 1.1\ntype user\ntype d\n  relations\n    define v: [user with c]\n"
        )


def test_program_is_readable() -> None:
    text = compile_spicedb(SCHEMA).datalog
    assert "// permission view = (viewer - banned) + parent->view  [exact, materialized]" in text
    assert (
        "folder__view(O, T, I, R) :- folder__viewer(O, T, I, R), !folder__banned(O, T, I, R)"
        in text
    )
    assert ".on_demand" in text and "document__limited" in text


def test_openfga_dsl_and_json_compile_alike() -> None:
    dsl = (
        "model\n  schema 1.1\ntype user\ntype folder\n  relations\n    define viewer: [user]\n"
        "type doc\n  relations\n    define parent: [folder]\n"
        "    define viewer: [user] or viewer from parent\n"
    )
    json_model = {
        "schema_version": "1.1",
        "type_definitions": [
            {"type": "user"},
            {
                "type": "folder",
                "relations": {"viewer": {"this": {}}},
                "metadata": {
                    "relations": {"viewer": {"directly_related_user_types": [{"type": "user"}]}}
                },
            },
            {
                "type": "doc",
                "relations": {
                    "parent": {"this": {}},
                    "viewer": {
                        "union": {
                            "child": [
                                {"this": {}},
                                {
                                    "tupleToUserset": {
                                        "tupleset": {"relation": "parent"},
                                        "computedUserset": {"relation": "viewer"},
                                    }
                                },
                            ]
                        }
                    },
                },
                "metadata": {
                    "relations": {
                        "parent": {"directly_related_user_types": [{"type": "folder"}]},
                        "viewer": {"directly_related_user_types": [{"type": "user"}]},
                    }
                },
            },
        ],
    }
    a = compile_openfga(dsl).datalog
    b = compile_openfga(json_model).datalog
    rules = lambda t: [x for x in t.splitlines() if ":-" in x]  # noqa: E731
    assert rules(a) == rules(b)


USERS = ["user:a", "user:b", "user:c", "user:*"]
OBJECTS = {
    "group": ["g1", "g2"],
    "folder": ["f1", "f2", "f3"],
    "document": ["d1", "d2"],
}


def _random_relationship(rng: random.Random) -> str:
    choice = rng.choice(
        [
            ("group", "member", [*USERS, "group:g1#member", "group:g2#member"]),
            ("folder", "parent", ["folder:f1", "folder:f2", "folder:f3"]),
            ("folder", "viewer", [*USERS, "group:g1#member"]),
            ("folder", "banned", ["user:a", "user:b", "group:g2#member"]),
            ("document", "parent", ["folder:f1", "folder:f2", "folder:f3"]),
            ("document", "owner", ["user:a", "user:b", "user:c"]),
            ("document", "reader", [*USERS, "group:g2#member"]),
        ]
    )
    otype, rel, subjects = choice
    return f"{otype}:{rng.choice(OBJECTS[otype])}#{rel}@{rng.choice(subjects)}"


def _answers(view: ZanzibarView) -> dict[tuple[str, str, str], bool]:
    out = {}
    for otype, perms in (("folder", ["view", "viewer"]), ("document", ["view", "both", "limited"])):
        for oid in OBJECTS[otype]:
            for perm in perms:
                for subj in [*USERS, "user:stranger", "group:g1#member"]:
                    out[(f"{otype}:{oid}", perm, subj)] = view.check(f"{otype}:{oid}", perm, subj)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_incremental_equals_from_scratch(seed: int) -> None:
    rng = random.Random(seed)
    compiled = compile_spicedb(SCHEMA)
    live = Engine(compiled.datalog)
    present: set[str] = set()
    for _ in range(40):
        batch = {_random_relationship(rng) for _ in range(rng.randint(1, 4))}
        insert = [r for r in batch if rng.random() < 0.6]
        delete = [r for r in batch if r not in insert] + (
            rng.sample(sorted(present), 1) if present and rng.random() < 0.4 else []
        )
        facts = lambda rs: [tuple(parse_relationship(r).fact()[1:]) for r in rs]  # noqa: E731
        live.update(insert={"relationship": facts(insert)}, delete={"relationship": facts(delete)})
        present = (present - set(delete)) | set(insert)
        scratch = Engine(compiled.datalog)
        if present:
            scratch.update(insert={"relationship": facts(sorted(present))})
        assert _answers(ZanzibarView(live)) == _answers(ZanzibarView(scratch))
