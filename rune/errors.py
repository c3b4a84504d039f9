"""The one root exception of RUNE and its per-stage subclasses.

Every error RUNE raises on purpose derives from :class:`RuneError`, so a caller can catch
everything the engine reports with one ``except`` clause and still tell the stages apart.
"""

from __future__ import annotations

__all__ = ["RuneError"]


class RuneError(Exception):
    """Root of every error RUNE raises on purpose."""
