"""Reading settings: TOML file (migrated to the current version), then ``RUNE_*`` environment
variables, then explicit overrides (CLI flags), each overriding the one before, key by key.

Environment variables name a key by its path: ``RUNE_SERVER__PORT=9000``,
``RUNE_KAFKA__BOOTSTRAP=broker:9092``, ``RUNE_STREAM__CHANGEFEED_RELATIONS='["member_of"]'``.
A problem is reported where its value came from: the variable that set it
(``RUNE_CACHE__MAX_ENTRIES: Input should be a valid integer``), else the file and key; a variable
with a section that does not exist (``RUNE_SERVR__PORT``) is an error too.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final, get_origin

from pydantic import BaseModel, ValidationError
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

ENV_PREFIX: Final = "RUNE_"
ENV_DELIMITER: Final = "__"
Path_ = tuple[str, ...]


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
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, frozen=True, extra="forbid"
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
    env = _environment()
    _check_environment(env)
    cls = type("_Loader", (_FromEnvironment,), {"_file": data})
    try:
        loaded = cls(**given)
    except ValidationError as exc:
        raise _located(exc, where, env, set(_leaves(data)), set(_leaves(given))) from None
    except SettingsError as exc:  # not expected after _check_environment; kept as a net
        raise ConfigError(str(exc), "environment") from None
    settings = Settings.model_validate(
        {
            name: getattr(loaded, name)
            for name in Settings.model_fields  # sections are already validated models
        }
    )
    return Loaded(settings, path, notes)


def _environment() -> dict[Path_, str]:
    """Setting paths named by ``RUNE_*`` variables (any case, as pydantic-settings reads them)
    -> the variable. Only names of a settings field or with the ``__`` delimiter name a
    setting; others (``RUNE_KAFKA_BOOTSTRAP`` of the test scripts) belong to other tools."""
    out: dict[Path_, str] = {}
    for name in os.environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))
        if len(path) > 1 or path[0] in Settings.model_fields:
            out[path] = name
    return out


def _check_environment(env: Mapping[Path_, str]) -> None:
    """Variables naming no section, or holding invalid JSON for a list or section value, are
    errors naming the variable (pydantic-settings would ignore the first and blame neither)."""
    problems = []
    for path, name in sorted(env.items()):
        field = Settings.model_fields.get(path[0])
        if field is None or (len(path) > 1 and not _is_model(field.annotation)):
            known = ", ".join(
                n for n, f in Settings.model_fields.items() if _is_model(f.annotation)
            )
            problems.append((name, f"no settings section {path[0]!r} (sections: {known})"))
            continue
        if _is_json(path):
            try:
                json.loads(os.environ[name])
            except ValueError as exc:
                problems.append((name, f"not valid JSON ({exc}); lists and sections are JSON"))
    if problems:
        raise _error(problems)


def _annotation(path: Path_) -> Any:
    model: Any = Settings
    annotation: Any = None
    for part in path:
        if not _is_model(model) or part not in model.model_fields:
            return None
        annotation = model = model.model_fields[part].annotation
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_json(path: Path_) -> bool:
    """pydantic-settings reads the variable of a list, set, mapping or section as JSON."""
    annotation = _annotation(path)
    origin = get_origin(annotation) or annotation
    return _is_model(annotation) or origin in (list, tuple, set, frozenset, dict)


def _leaves(d: Mapping[str, Any], prefix: Path_ = ()) -> Iterator[Path_]:
    for key, value in d.items():
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key)


def _located(
    exc: ValidationError,
    where: str,
    env: Mapping[Path_, str],
    file: set[Path_],
    flags: set[Path_],
) -> ConfigError:
    """The validation problems, each named by where its value came from. A key's value comes
    from the first of flags (``overrides``), environment, file that sets it or a section
    holding it; a variable naming exactly that key stands for it
    (``RUNE_CACHE__MAX_ENTRIES: Input should be...``). A section's or the whole settings'
    check blames every source that set something in it."""
    problems: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc) or "(root)"
        text = f"{key}: {err['msg']}"
        holds = [(p, n) for p, n in env.items() if loc[: len(p)] == p]
        if any(loc[: len(p)] == p for p in flags):
            problems.append(("flags", text))
        elif holds:
            path, name = max(holds, key=lambda h: len(h[0]))
            if path != loc:
                problems.append((name, text))
            elif err["type"] == "extra_forbidden":
                problems.append((name, f"unknown key {key}"))
            else:
                problems.append((name, err["msg"]))
        elif any(loc[: len(p)] == p for p in file):
            problems.append((where, text))
        else:
            inside = sorted(n for p, n in env.items() if p[: len(loc)] == loc)
            if not inside or any(p[: len(loc)] == loc for p in file | flags):
                inside.insert(0, where)
            problems.append((", ".join(inside), text))
    return _error(problems)


def _error(problems: list[tuple[str, str]]) -> ConfigError:
    """One error for (source, problem) pairs: located at the source when there is one."""
    sources = {source for source, _ in problems}
    if len(sources) == 1:
        return ConfigError("; ".join(text for _, text in problems), sources.pop())
    return ConfigError("; ".join(f"{source}: {text}" for source, text in problems))


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
