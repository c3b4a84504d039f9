"""Validation files: SpiceDB's (``zed validate``), OpenFGA's store tests (``.fga.yaml``) and
OpenFGA's consolidated test suite, run on a fresh engine per file (or stage).

:func:`run_file` (or :func:`run_text`) recognises the format by its keys (``schema`` or
``schemaFile``: SpiceDB; ``tests`` of ``stages``: the consolidated suite; ``model`` or
``model_file``: store tests) and returns a :class:`Report`; :class:`ValidationFileError` is an
invalid file. The formats, what each key means and the pitfalls of comparing: SpiceDB in
:mod:`rune.models.validation_spicedb`, OpenFGA in :mod:`rune.models.validation_openfga`; what
they share in :mod:`rune.models.validation_common`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rune.models.validation_common import (
    Failure,
    Report,
    ValidationFileError,
    check_relationship,
    load_yaml,
)
from rune.models.validation_openfga import run_consolidated, run_store_tests
from rune.models.validation_spicedb import run_spicedb

__all__ = ["Failure", "Report", "ValidationFileError", "check_relationship", "run_file", "run_text"]


def run_file(path: Path) -> Report:
    """Run one validation file (the format is recognised by its keys)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFileError(f"{path}: {exc.strerror or exc}") from None
    return run_text(text, str(path), path.parent)


def run_text(text: str, name: str = "<file>", base: Path | None = None) -> Report:
    """Run the text of a validation file (``name`` in messages; the files it names are
    relative to ``base``, by default the working directory)."""
    doc = load_yaml(text, name)
    if not isinstance(doc, Mapping):
        raise ValidationFileError(f"{name}: a validation file is a YAML mapping")
    base = base or Path.cwd()
    if "schema" in doc or "schemaFile" in doc:
        return run_spicedb(doc, name, base)
    tests = doc.get("tests")
    if isinstance(tests, list) and tests and isinstance(tests[0], Mapping) and "stages" in tests[0]:
        return run_consolidated(doc, name)
    if "model" in doc or "model_file" in doc:
        return run_store_tests(doc, name, base)
    raise ValidationFileError(
        f"{name}: neither a SpiceDB validation file (schema) nor an OpenFGA test file (model)"
    )
