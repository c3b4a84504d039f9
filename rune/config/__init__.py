"""Configuration: one validated, frozen :class:`Settings` from a TOML file, ``RUNE_*``
environment variables and CLI flags, with migration of older file versions
(docs/OPERATIONS.md lists every key)."""

from rune.config.errors import ConfigError
from rune.config.load import Loaded, load, load_settings, read_file
from rune.config.migrate import migrate
from rune.config.settings import (
    CURRENT_VERSION,
    Cache,
    Datalog,
    EmbeddedLogSettings,
    Kafka,
    Logging,
    Server,
    Settings,
    Stream,
    Topics,
)

__all__ = [
    "CURRENT_VERSION",
    "Cache",
    "ConfigError",
    "Datalog",
    "EmbeddedLogSettings",
    "Kafka",
    "Loaded",
    "Logging",
    "Server",
    "Settings",
    "Stream",
    "Topics",
    "load",
    "load_settings",
    "migrate",
    "read_file",
]
