"""Parser: the syntax tree of valid programs, and golden files for every error."""

from __future__ import annotations

from pathlib import Path

import pytest

from rune.ivm import DatalogError, DatalogSyntaxError, Engine, EntityRef
from rune.ivm.parser import parse, tokenize
from rune.ivm.syntax import Atom, Comparison, Const, Negation, Var
from tests.ivm.golden import GOLDEN, check_golden

ERROR_CASES = sorted((GOLDEN / "errors").glob("*.dl"))


def test_parses_every_construct_of_the_dialect() -> None:
    program = parse(
        """
        // line comment
        edge("a", "b"). /* block
        comment */
        member(User::"alice", App::Group::"eng", true, false, -42, "esc\\n\\u00e9").
        path(X, Z) :- path(X, Y), edge(Y, Z).
        far(X, Y) :- node(X), node(Y), !path(X, Y), X != Y, X < Y, _ignored(X, _).
        .on_demand far.
        """
    )
    assert [str(r) for r in program.rules] == [
        'edge("a", "b").',
        'member(User::"alice", App::Group::"eng", true, false, -42, "esc\\né").',
        "path(X, Z) :- path(X, Y), edge(Y, Z).",
        "far(X, Y) :- node(X), node(Y), !path(X, Y), X != Y, X < Y, _ignored(X, _).",
    ]
    member = program.rules[1].head
    assert member.args[0] == Const(EntityRef("User", "alice"))
    assert member.args[1] == Const(EntityRef("App::Group", "eng"))
    assert member.args[2:5] == (Const(True), Const(False), Const(-42))
    assert member.args[5] == Const("esc\né")
    far = program.rules[3]
    assert isinstance(far.body[2], Negation) and far.body[2].atom.relation == "path"
    assert isinstance(far.body[3], Comparison) and far.body[3].op == "!="
    anonymous = far.body[5]
    assert isinstance(anonymous, Atom) and isinstance(anonymous.args[1], Var)
    assert anonymous.args[1].anonymous
    assert [d.relation for d in program.on_demand] == ["far"]


def test_positions_are_one_based_line_and_column() -> None:
    rule = parse("\n  p(X) :-\n    q(X).").rules[0]
    assert (rule.line, rule.column) == (2, 3)
    body = rule.body[0]
    assert isinstance(body, Atom) and (body.line, body.column) == (3, 5)


def test_each_anonymous_variable_is_distinct() -> None:
    atom = parse("p(X) :- q(X, _, _).").rules[0].body[0]
    assert isinstance(atom, Atom)
    assert atom.args[1] != atom.args[2]


def test_zero_arity_atoms() -> None:
    program = parse("maintenance. open :- !maintenance, flag().")
    assert [str(r) for r in program.rules] == [
        "maintenance().",
        "open() :- !maintenance(), flag().",
    ]


def test_tokenizer_tracks_lines_through_block_comments() -> None:
    tokens = tokenize("/* a\nb\n*/ x")
    assert (tokens[0].text, tokens[0].line, tokens[0].column) == ("x", 3, 4)


@pytest.mark.parametrize("path", ERROR_CASES, ids=[p.stem for p in ERROR_CASES])
def test_error_golden(path: Path) -> None:
    with pytest.raises(DatalogError) as info:
        Engine(path.read_text())
    err = info.value
    assert err.line >= 1 and err.column >= 1, "program errors must carry a place"
    check_golden(path.with_suffix(".txt"), f"{type(err).__name__}: {err}\n")


def test_rejects_non_string_and_oversized_source() -> None:
    with pytest.raises(DatalogSyntaxError):
        parse(b"p(1).")  # type: ignore[arg-type]
    with pytest.raises(DatalogSyntaxError, match="exceeds"):
        parse("p(1)." * 3_000_000)


def test_rejects_huge_string_constant() -> None:
    with pytest.raises(DatalogSyntaxError, match="exceeds the limit") as info:
        parse('p("' + "x" * 70_000 + '").')
    assert (info.value.line, info.value.column) == (1, 3)


def test_deeply_nested_input_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(DatalogSyntaxError):
        parse("p(" * 100_000)
