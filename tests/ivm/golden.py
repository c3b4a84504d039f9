"""Golden-file comparison: ``RUNE_UPDATE_GOLDEN=1 pytest`` rewrites the expected files."""

from __future__ import annotations

import os
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def check_golden(path: Path, actual: str) -> None:
    if os.environ.get("RUNE_UPDATE_GOLDEN") == "1" or not path.exists():
        if os.environ.get("CI") and not path.exists():
            raise AssertionError(f"golden file {path} is missing")
        path.write_text(actual)
    assert actual == path.read_text(), f"output differs from {path}"
