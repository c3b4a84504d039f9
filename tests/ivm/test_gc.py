"""What ``Engine.update`` does with Python's cyclic GC (docs/datalog.md, *The cyclic GC*).

A large batch runs with the GC paused and re-enables it; one that at least doubled the
engine ends with exactly one full collection; nothing happens when the caller disabled the GC
itself; the engine never freezes.
"""

from __future__ import annotations

import gc

import pytest

from rune.ivm import Engine, engine

PROGRAM = "p(X, Y) :- e(X, Y). p(X, Z) :- p(X, Y), e(Y, Z)."


@pytest.fixture
def collections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Full collections the engine asks for (``gc.collect()`` calls), with small thresholds."""
    monkeypatch.setattr(engine, "LARGE_BATCH", 50)
    monkeypatch.setattr(engine, "SETTLE_GROWTH", 100)
    calls: list[int] = []
    real = gc.collect

    def collect(generation: int = 2) -> int:
        calls.append(generation)
        return real(generation)

    monkeypatch.setattr(engine.gc, "collect", collect)
    return calls


def chain(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [(f"n{i}", f"n{i + 1}") for i in range(start, start + n)]


def test_a_first_load_ends_with_one_full_collection(collections: list[int]) -> None:
    eng = Engine(PROGRAM)
    assert collections == []
    frozen = gc.get_freeze_count()
    eng.update(insert={"e": chain(60)})  # 60 facts, 1,830 paths: the engine grew from nothing
    assert collections == [2]
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen


def test_a_batch_that_does_not_double_the_engine_does_not_collect(
    collections: list[int],
) -> None:
    eng = Engine(PROGRAM)
    eng.update(insert={"e": chain(60)})
    collections.clear()
    eng.update(insert={"e": [(f"m{i}", f"m{i + 1}") for i in range(60)]})  # +1,890 on 1,890
    assert collections == [2]  # doubled: collects
    collections.clear()
    eng.update(insert={"e": [(f"k{i}", f"k{i}x") for i in range(60)]})  # +120 on 3,780
    assert collections == []
    eng.update(insert={"e": [("a", "b")]})  # small: not paused at all
    assert collections == []
    assert gc.isenabled()


def test_nothing_when_the_caller_disabled_the_gc(collections: list[int]) -> None:
    eng = Engine(PROGRAM)
    gc.disable()
    try:
        eng.update(insert={"e": chain(60)})
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert collections == []
