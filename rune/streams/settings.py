"""One validated, frozen settings object for the service.

Sources, highest priority first: explicit values (CLI flags), environment variables
``RUNE_*`` (nested with ``__``, e.g. ``RUNE_TOPICS__FACTS``), a TOML file (``--config``), the
defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings", "Topics", "load_settings"]


class Topics(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    facts: str = "rune.facts"
    policies: str = "rune.policies"
    requests: str = "rune.requests"
    decisions: str = "rune.decisions"
    changes: str = "rune.changes"
    dlq: str = "rune.dlq"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RUNE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: str | None = Field(None, description="bootstrap HOST:PORT; None: embedded log")
    topics: Topics = Topics()
    group_id: str = "rune"
    client_id: str = "rune"
    partitions: int = Field(3, ge=1, description="partitions of topics RUNE creates")
    ingest_batch: int = Field(5000, ge=1, description="records applied per step")
    serve_batch: int = Field(1000, ge=1, description="requests decided per step")
    poll_timeout_s: float = Field(0.05, gt=0)
    token_wait_s: float = Field(5.0, ge=0, description="bound on waiting for a token")
    max_waiting: int = Field(100_000, ge=1, description="requests waiting for tokens")
    changefeed_relations: tuple[str, ...] = ()
    checkpoint_interval_s: float = Field(1.0, gt=0)
    isolation_level: Literal["read_uncommitted", "read_committed"] = "read_uncommitted"
    shutdown_timeout_s: float = Field(5.0, gt=0)
    cache_entries: int = Field(100_000, ge=0)


class _FileSettings(Settings):
    """Settings read from a TOML file as well (its path is known at run time)."""

    _toml: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml))
        return tuple(sources)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (None values are ignored), ``RUNE_*``, the TOML file."""
    given = {k: v for k, v in overrides.items() if v is not None}
    cls: type[_FileSettings] = type("_Loaded", (_FileSettings,), {"_toml": config})
    loaded = cls(**given)
    return Settings.model_validate(loaded.model_dump())
