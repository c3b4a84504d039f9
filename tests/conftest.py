"""Suite-wide fixtures."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _unfrozen_heap() -> Iterator[None]:
    """Services freeze the heap once caught up (``stream.gc_freeze``); give it back after each
    test so frozen garbage of one test is not kept for the rest of the run."""
    yield
    gc.unfreeze()
