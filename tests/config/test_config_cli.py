"""``rune config check`` / ``rune config migrate`` on files."""

from __future__ import annotations

import tomllib
from pathlib import Path

from click.testing import CliRunner

from rune.cli.config import config
from rune.config import load_settings


def test_check_prints_effective_settings_with_secrets_masked(tmp_path: Path) -> None:
    path = tmp_path / "rune.toml"
    path.write_text('version = 2\n[server]\nport = 9000\nadmin_token = "hunter2-hunter2"\n')
    result = CliRunner().invoke(config, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    shown = tomllib.loads(result.stdout.split("\n", 1)[1])
    assert shown["server"]["port"] == 9000 and shown["server"]["admin_token"] == "**********"


def test_check_fails_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "rune.toml"
    path.write_text("version = 2\n[cache]\nmax_entries = -3\n")
    result = CliRunner().invoke(config, ["check", str(path)])
    assert result.exit_code == 1
    assert "cache.max_entries" in result.output and str(path) in result.output


def test_migrate_output_loads_to_the_same_settings(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text('group_id = "g"\nserve_batch = 10\n[topics]\ndlq = "my.dlq"\n')
    result = CliRunner().invoke(config, ["migrate", str(old)])
    assert result.exit_code == 0, result.output
    new = tmp_path / "new.toml"
    new.write_text(result.stdout)
    assert tomllib.loads(result.stdout)["version"] == 2
    assert load_settings(new) == load_settings(old)
    assert "version 1 layout migrated" in result.stderr
