"""The worked example of docs/streaming.md, run as written: its ``example:run`` blocks (shell
and Python) in order, against ``rune run --kafka`` on the real broker, each expected to exit 0,
and every line of its ``example:output`` blocks found in what the block before printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rune.config import Topics
from tests.integration.processes import Rune, create_topics, delete_topics

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "streaming.md"
BLOCK = re.compile(r"<!-- example:(\w+) -->\n```(\w+)\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(DOC.read_text())]


@pytest.fixture
def topics(kafka_bootstrap: str) -> Iterator[Topics]:
    t = create_topics(kafka_bootstrap, partitions=2)
    yield t
    delete_topics(kafka_bootstrap, t)


def _env(kafka: str, topics: Topics, bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNE_")}
    env.update({f"RUNE_TOPICS__{role.upper()}": name for role, name in topics.model_dump().items()})
    env["KAFKA"] = kafka
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_worked_example_runs_as_written(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    blocks = _blocks()
    kinds = [kind for kind, _, _ in blocks]
    assert kinds.count("service") == 1 and kinds.count("run") >= 4 and "output" in kinds
    [service] = [body for kind, _, body in blocks if kind == "service"]
    assert "rune run --kafka $KAFKA --changefeed can_read" in service

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "rune"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m rune.cli "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "work"  # the doc's relative paths: rune/examples/..., its own outputs
    work.mkdir()
    (work / "rune").symlink_to(REPO / "rune")
    env = _env(kafka_bootstrap, topics, bin_dir)

    settings = {"stream": {"changefeed_relations": ["can_read"], "checkpoint_interval_s": 0.5}}
    rune = Rune(kafka_bootstrap, topics, tmp_path / "rune.log", settings=settings).start()
    try:
        rune.wait_ready()
        printed = ""
        for kind, lang, body in blocks:
            if kind == "run":
                argv = (
                    ["bash", "-euo", "pipefail", "-c", body]
                    if lang == "sh"
                    else [sys.executable, "-c", body]
                )
                done = subprocess.run(
                    argv, cwd=work, env=env, capture_output=True, text=True, timeout=120,
                    stdin=subprocess.DEVNULL,
                )  # fmt: skip
                assert done.returncode == 0, (
                    f"{lang} block failed ({done.returncode}):\n{body}\n"
                    f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}\nservice:\n{rune.tail()}"
                )
                printed = done.stdout
            elif kind == "output":
                got = set(printed.splitlines())
                missing = [line for line in body.splitlines() if line and line not in got]
                assert not missing, f"not printed: {missing}\nprinted:\n{printed}"
        assert (work / "tutorial-bundle.json").is_file()
    finally:
        assert rune.stop() == 0, rune.tail()
