"""The error of configuration: a bad file, value or environment variable."""

from __future__ import annotations

from rune.errors import RuneError

__all__ = ["ConfigError"]


class ConfigError(RuneError):
    """Invalid settings; ``location`` names the file and key (``rune.toml: server.port``)."""

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(f"{location}: {message}" if location else message)
        self.location = location
        self.reason = message
