"""Reading settings: TOML file (migrated to the current version), then ``RUNE_*`` environment
variables, then explicit overrides (CLI flags), each overriding the one before, key by key.

Environment variables name a key by its path: ``RUNE_SERVER__PORT=9000``,
``RUNE_KAFKA__BOOTSTRAP=broker:9092``, ``RUNE_STREAM__CHANGEFEED_RELATIONS='["member_of"]'``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from rune.config.errors import ConfigError
from rune.config.migrate import migrate
from rune.config.settings import Settings

__all__ = ["Loaded", "load_settings", "read_file"]


def read_file(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The file's settings in the current version's shape, and migration notes."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", str(path)) from None
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", str(path)) from None
    return migrate(doc, str(path))


class _FromEnvironment(BaseSettings, Settings):
    """``Settings`` with pydantic-settings' sources: init values > environment > file."""

    model_config = SettingsConfigDict(
        env_prefix="RUNE_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )
    _file: ClassVar[dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _DictSource(settings_cls, cls._file)


class _DictSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


@dataclass(frozen=True, slots=True)
class Loaded:
    """Settings with where they came from (for ``rune config check`` and reloads)."""

    settings: Settings
    path: Path | None
    notes: list[str]
    """What migrating an older file changed."""


def load_settings(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Settings from ``overrides`` > ``RUNE_*`` > the TOML file at ``path`` > defaults.

    ``overrides`` is nested like the file (``{"kafka": {"bootstrap": "h:9092"}}``); None
    values are ignored so CLI flags can be passed as they are. Raises :class:`ConfigError`
    naming the file and key of the first problems.
    """
    return load(path, overrides).settings


def load(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Loaded:
    """:func:`load_settings`, with the file's migration notes."""
    data, notes = read_file(path) if path is not None else ({}, [])
    where = str(path) if path is not None else "settings"
    given = _drop_none(overrides or {})
    if "RUNE_KAFKA" in os.environ:
        raise ConfigError("RUNE_KAFKA is the version-1 variable; set RUNE_KAFKA__BOOTSTRAP")
    cls = type("_Loader", (_FromEnvironment,), {"_file": data})
    try:
        loaded = cls(**given)
    except ValidationError as exc:
        raise ConfigError(_describe(exc), where) from None
    except SettingsError as exc:  # an environment variable that is not valid JSON
        raise ConfigError(str(exc), "environment") from None
    settings = Settings.model_validate(
        {
            name: getattr(loaded, name)
            for name in Settings.model_fields  # sections are already validated models
        }
    )
    return Loaded(settings, path, notes)


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            inner = _drop_none(v)
            if inner:
                out[k] = inner
        elif v is not None:
            out[k] = v
    return out


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        problems.append(f"{loc}: {err['msg']}")
    return "; ".join(problems)
