"""Code generation: the one place where generated Python source becomes functions.

The engine compiles its hot loops (join plans, re-derivation checks, index maintenance, bulk
index builds, the fast membership check) to plain Python functions: locals only, no per-row
dispatch, several times faster than interpreting a plan. Every such function is made by
:func:`define`, and code built line by line is written with :class:`Writer`.

Pitfalls: generated code sees only the names in the namespace it is given (no module
globals), and everything interpolated into source must be an identifier or a literal the
engine made itself (column numbers, generated names, ``repr`` of encoded ids), never a value
from facts or rules as text; values reach generated code through the namespace.
"""

from __future__ import annotations

from typing import Any


def define(source: str, function: str, label: str, namespace: dict[str, Any]) -> Any:
    """Compile ``source`` with ``namespace`` as its globals and return its ``function``.

    ``label`` names the code in tracebacks and profiles (``<plan member:3>``).
    """
    exec(compile(source, f"<{label}>", "exec"), namespace)
    return namespace[function]


class Writer:
    """Lines of a generated function body, with loop-invariant probes hoisted out of loops.

    ``bound[var]`` is the line that binds variable ``var`` (and its depth). A probe whose key
    only uses variables bound before the innermost enclosing loop is computed once, right
    after its last variable is bound (``probe``), instead of once per iteration.
    """

    def __init__(self, depth: int = 1) -> None:
        self.lines: list[str] = []
        self.depth = depth
        self.bound: dict[str, tuple[int, int]] = {}
        self.loops: list[int] = []  # line numbers of ``for`` lines
        self.hoisted = 0

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def open(self, text: str) -> None:
        """A line that opens a block (``for``, ``if``): the lines after it are inside it."""
        if text.startswith("for "):
            self.loops.append(len(self.lines))
        self.line(text)
        self.depth += 1

    def close(self) -> None:
        """End the innermost open block."""
        self.depth -= 1

    def bind(self, var: str, text: str) -> None:
        self.bound[var] = (len(self.lines), self.depth)
        self.line(text)

    def loop(self, target: str, iterable: str, bound: list[str]) -> None:
        """``for target in iterable:``, whose target binds the variables ``bound``."""
        for var in bound:
            self.bound[var] = (len(self.lines), self.depth + 1)
        self.open(f"for {target} in {iterable}:")

    def probe(self, call: str, key_vars: list[str]) -> str:
        """``call`` (a ``.get``), or a name bound to its result outside the loops it is in."""
        at, depth = max((self.bound[v] for v in key_vars), default=(-1, 1))
        if not any(loop > at for loop in self.loops):
            return call
        name = f"q{self.hoisted}"
        self.hoisted += 1
        self.lines.insert(at + 1, "    " * depth + f"{name} = {call}")
        self.loops = [loop + 1 if loop > at else loop for loop in self.loops]
        self.bound = {v: (i + 1 if i > at else i, d) for v, (i, d) in self.bound.items()}
        return name
