"""docs/API.md shows what the server answers: every example in it is run against a real
``rune serve`` and its output compared with the one printed, so the guide cannot drift.

The format (also described in docs/API.md, "How the examples are checked"):

- every fenced block tagged ``console`` is a sequence of examples: a line starting with ``$ ``
  is a command (it goes on over the next lines while a quote is open or a line ends with
  ``\\``), and the lines up to the next command are its output;
- the blocks run in order, in one ``bash`` per block (variables carry over between the commands
  of a block), from the repository root, with ``TOKEN`` set to the admin token, against one
  server started as the guide says (``localhost:18181`` stands for its address);
- a block right after a line ``<!-- serve: NAME=VALUE ... -->`` runs against its own server
  started with those variables;
- outputs are compared after ``VOLATILE`` values are masked on both sides: ``latency_us`` and
  ``pid``, generated request ids ``http-<32 hex>``, and the ``Date``, ``Server`` and
  ``Retry-After`` headers. Nothing else is ignored.

``RUNE_UPDATE_DOCS=1`` rewrites the outputs in docs/API.md with the ones the server gave (the
diff is then the review).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.http.harness import ROOT, rune_serve

DOC = ROOT / "docs" / "API.md"
DOC_ADDRESS = "localhost:18181"
DOC_PORT = "18181"
TOKEN = "s3cret-admin-token"
SERVE_ENV = {"RUNE_SERVER__ADMIN_TOKEN": TOKEN}
"""``RUNE_SERVER__ADMIN_TOKEN=s3cret-admin-token rune serve --port 18181``, as in the guide."""
UPDATE = os.environ.get("RUNE_UPDATE_DOCS") == "1"
COMMAND_TIMEOUT_S = 120.0
VOLATILE = (
    (re.compile(r'("(?:latency_us|pid)"\s*:\s*)\d+'), r"\1<n>"),
    (re.compile(r"\bhttp-[0-9a-f]{32}\b"), "http-<id>"),
    (re.compile(r"^(Date|Server|Retry-After): .*$", re.MULTILINE), r"\1: <varies>"),
)
SERVE_MARK = re.compile(r"^<!-- serve: (.*) -->$")

pytestmark = pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("curl") and shutil.which("jq")),
    reason="the examples of docs/API.md run with bash, curl and jq",
)


@dataclass
class Example:
    command: str
    output: list[str]
    first_line: int
    """0-based index in the document of the command's first line."""
    output_at: int
    """0-based index of the first output line."""


@dataclass
class Block:
    start: int
    env: dict[str, str]
    examples: list[Example] = field(default_factory=list)


def _complete(command: str) -> bool:
    if command.endswith("\\"):
        return False
    try:
        shlex.split(command)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def parse(lines: list[str]) -> list[Block]:
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```console":
            i += 1
            continue
        mark = SERVE_MARK.match(lines[i - 1]) if i else None
        env = dict(v.split("=", 1) for v in shlex.split(mark.group(1))) if mark else {}
        block = Block(i, env)
        i += 1
        while lines[i].strip() != "```":
            assert lines[i].startswith("$ "), f"docs/API.md:{i + 1}: a block starts with '$ '"
            first = i
            command = lines[i][2:]
            while not _complete(command):
                i += 1
                command += "\n" + lines[i]
            i += 1
            output_at = i
            while lines[i].strip() != "```" and not lines[i].startswith("$ "):
                i += 1
            output = lines[output_at:i]
            while output and not output[-1].strip():
                output.pop()
            block.examples.append(Example(command, output, first, output_at))
        blocks.append(block)
        i += 1
    return blocks


def normalize(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).rstrip()
    for pattern, mask in VOLATILE:
        text = pattern.sub(mask, text)
    return text


def run_block(block: Block, url: str) -> list[str]:
    """The outputs of the block's commands, run in one bash against ``url``."""
    port = url.rsplit(":", 1)[1]
    marker = "<<<rune-docs-example>>>"
    script = "".join(
        f"printf '%s\\n' '{marker}'\n{e.command.replace(DOC_ADDRESS, f'127.0.0.1:{port}')}\n"
        for e in block.examples
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env={**os.environ, "TOKEN": TOKEN},
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    assert not done.stderr, f"docs/API.md:{block.start + 1}: {done.stderr.decode()}"
    outputs = done.stdout.decode().split(f"{marker}\n")[1:]
    assert len(outputs) == len(block.examples), f"docs/API.md:{block.start + 1}: lost a marker"
    # the server's address as the guide writes it
    here = {f'"port":{port}': f'"port":{DOC_PORT}', f"127.0.0.1:{port}": DOC_ADDRESS}
    for actual, shown in here.items():
        outputs = [out.replace(actual, shown) for out in outputs]
    return outputs


def test_the_examples_of_the_api_guide_are_what_the_server_answers() -> None:
    lines = DOC.read_text(encoding="utf-8").split("\n")
    blocks = parse(lines)
    assert len(blocks) >= 10 and sum(len(b.examples) for b in blocks) >= 30
    got: dict[int, list[str]] = {}  # block start -> actual outputs
    with rune_serve(SERVE_ENV) as url:
        for block in blocks:
            if not block.env:
                got[block.start] = run_block(block, url)
    for block in blocks:
        if block.env:
            with rune_serve({**SERVE_ENV, **block.env}) as url:
                got[block.start] = run_block(block, url)
    drift = []
    for block in blocks:
        for example, actual in zip(block.examples, got[block.start], strict=True):
            expected = "\n".join(example.output)
            if normalize(actual) != normalize(expected):
                drift.append((example, actual))
    if UPDATE and drift:
        _rewrite(lines, drift)
        return
    assert not drift, "docs/API.md drifted (RUNE_UPDATE_DOCS=1 rewrites it):\n\n" + "\n\n".join(
        f"docs/API.md:{e.first_line + 1}: $ {e.command}\n--- printed\n"
        + "\n".join(e.output)
        + f"\n--- answered\n{actual.rstrip()}"
        for e, actual in drift
    )


def _rewrite(lines: list[str], drift: list[tuple[Example, str]]) -> None:
    """Replace the drifted outputs, last first so that earlier indexes stay valid."""
    for example, actual in sorted(drift, key=lambda d: -d[0].output_at):
        end = example.output_at + len(example.output)
        new = actual.replace("\r\n", "\n").rstrip().split("\n") if actual.strip() else []
        lines[example.output_at : end] = [line.rstrip() for line in new]
    Path(DOC).write_text("\n".join(lines), encoding="utf-8")
