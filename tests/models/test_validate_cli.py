"""`rune validate` on SpiceDB validation files: exit 0, 1 (with the path), 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parent.parent / "data" / "spicedb"
ROOT = Path(__file__).parent.parent.parent


def _run(*files: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rune.cli", "validate", *map(str, files)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("name", ["basics", "operators", "prefixed", "recursion"])
def test_feature_files_pass(name: str) -> None:
    done = _run(DATA / f"{name}.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok:" in done.stdout and ", 0 failed" in done.stdout


def test_failing_assertions_print_the_path() -> None:
    done = _run(DATA / "failing.yaml")
    assert done.returncode == 1
    assert "FAIL assertTrue: document:1#view@user:bob" in done.stdout
    assert "no path" in done.stdout  # the missing step
    assert "document:1#viewer@user:anne  (relationship)" in done.stdout  # the path found


def test_invalid_file_exits_2() -> None:
    done = _run(DATA / "invalid.yaml", DATA / "basics.yaml")
    assert done.returncode == 2
    assert "has no relation 'editor'" in done.stderr


def test_fga_store_file(tmp_path: Path) -> None:
    (tmp_path / "model.fga").write_text(
        "model\n  schema 1.1\ntype user\ntype document\n  relations\n"
        "    define owner: [user]\n    define viewer: [user, user:*] or owner\n"
    )
    (tmp_path / "store.fga.yaml").write_text(
        "model_file: model.fga\n"
        "tuples:\n  - {user: 'user:anne', relation: owner, object: 'document:1'}\n"
        "tests:\n  - name: t\n"
        "    tuples:\n      - {user: 'user:*', relation: viewer, object: 'document:2'}\n"
        "    check:\n      - user: user:anne\n        object: document:1\n"
        "        assertions: {owner: true, viewer: true}\n"
        "      - user: user:bob\n        object: document:1\n        assertions: {viewer: false}\n"
        "    list_objects:\n      - user: user:bob\n        type: document\n"
        "        assertions: {viewer: ['document:2']}\n"
        "    list_users:\n      - object: document:1\n        user_filter: [{type: user}]\n"
        "        assertions: {viewer: {users: ['user:anne']}}\n"
    )
    done = _run(tmp_path / "store.fga.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed, 0 failed" in done.stdout
