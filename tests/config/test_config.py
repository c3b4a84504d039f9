"""Settings: layering (flags > env > file > defaults), validation errors naming the key,
migration of version-1 files, and the values the service derives from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from rune.config import CURRENT_VERSION, ConfigError, load, load_settings, migrate
from rune.config.migrate import _V1_MOVES


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rune.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_service_on_loopback() -> None:
    s = load_settings()
    assert s.embedded and s.server.host == "127.0.0.1" and s.server.port == 8080
    assert s.version == CURRENT_VERSION


def test_layering_flags_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "version = 2\n[kafka]\ngroup_id = 'from-file'\nclient_id = 'file-client'\n"
        "[stream]\ntoken_wait_s = 2.5\n[topics]\nfacts = 'f1'\n",
    )
    monkeypatch.setenv("RUNE_STREAM__TOKEN_WAIT_S", "1.5")
    monkeypatch.setenv("RUNE_TOPICS__REQUESTS", "r1")
    monkeypatch.setenv("RUNE_KAFKA__GROUP_ID", "from-env")
    s = load_settings(path, {"kafka": {"group_id": "from-flag", "bootstrap": None}})
    assert s.kafka.group_id == "from-flag"  # flag beats env and file
    assert s.kafka.client_id == "file-client"  # file value kept where nothing overrides it
    assert s.stream.token_wait_s == 1.5  # env beats file
    assert (s.topics.facts, s.topics.requests) == ("f1", "r1")
    assert s.embedded  # the None flag did not override anything
    with pytest.raises(ValidationError):
        s.kafka = s.kafka  # type: ignore[misc]  # frozen


def test_env_lists_and_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNE_STREAM__CHANGEFEED_RELATIONS", '["member_of", "allow"]')
    monkeypatch.setenv("RUNE_SERVER__ADMIN_TOKEN", "s3cret-token")
    s = load_settings()
    assert s.stream.changefeed_relations == ("member_of", "allow")
    assert s.server.admin_token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(s) and "s3cret-token" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version = 2\n[server]\nport = 99999\n", "server.port"),
        ("version = 2\n[server]\nportt = 1\n", "server.portt"),
        ("version = 2\n[cache]\nttl_seconds = -1\n", "cache.ttl_seconds"),
        ("version = 2\n[logging]\npseudonymize = true\n", "logging"),
        ("version = 2\n[server]\nworkers = 4\n", "workers"),
        ("version = 2\n[topics]\nfacts = 'x'\nrequests = 'x'\n", "topics"),
        ("version = 2\nunknown = 1\n", "unknown"),
    ],
)
def test_invalid_values_name_the_file_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value) and where in str(info.value)


def test_unparseable_and_future_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_settings(write(tmp_path, "[server\nport = 1\n"))
    with pytest.raises(ConfigError, match="newer than this RUNE"):
        load_settings(write(tmp_path, "version = 99\n"))
    with pytest.raises(ConfigError, match="must be an integer"):
        load_settings(write(tmp_path, "version = 'two'\n"))


def test_env_typo_is_an_error_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNE_SERVER__PROT", "1")
    with pytest.raises(ConfigError, match=r"^RUNE_SERVER__PROT: unknown key server\.prot$"):
        load_settings()


def test_environment_mistakes_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNE_KAFKA", "broker:9092")
    with pytest.raises(ConfigError, match="RUNE_KAFKA__BOOTSTRAP"):
        load_settings()
    monkeypatch.delenv("RUNE_KAFKA")
    monkeypatch.setenv("RUNE_STREAM__CHANGEFEED_RELATIONS", "[not json")
    with pytest.raises(ConfigError, match=r"^RUNE_STREAM__CHANGEFEED_RELATIONS: not valid JSON"):
        load_settings()


@pytest.mark.parametrize(
    ("env", "reported"),
    [
        (
            {"RUNE_CACHE__MAX_ENTRIES": "many"},
            "RUNE_CACHE__MAX_ENTRIES: Input should be a valid integer",
        ),
        (
            {"RUNE_SERVER__PORT": "99999"},
            "RUNE_SERVER__PORT: Input should be less than or equal to 65535",
        ),
        (
            {"RUNE_CACHE__MAX_ENTRIEZ": "5"},
            "RUNE_CACHE__MAX_ENTRIEZ: unknown key cache.max_entriez",
        ),
        ({"RUNE_SERVR__PORT": "9000"}, "RUNE_SERVR__PORT: no settings section 'servr'"),
        ({"RUNE_VERSION__X": "1"}, "RUNE_VERSION__X: no settings section 'version'"),
        ({"rune_server__port": "abc"}, "rune_server__port: Input should be a valid integer"),
        ({"RUNE_SERVER": '{"port": "x"}'}, "RUNE_SERVER: server.port: Input should be a valid"),
        ({"RUNE_SERVER": "{port"}, "RUNE_SERVER: not valid JSON"),
        ({"RUNE_TOPICS__REQUESTS": "rune.facts"}, "RUNE_TOPICS__REQUESTS: topics: Value error"),
    ],
)
def test_a_bad_environment_variable_is_named_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reported: str
) -> None:
    """The file is fine; the problem is the variable's, and so is the blame (#env-typos)."""
    path = write(tmp_path, "version = 2\n[cache]\nmax_entries = 10\n[server]\nport = 9000\n")
    assert load_settings(path).cache.max_entries == 10
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for where in (path, None):
        with pytest.raises(ConfigError) as info:
            load_settings(where)
        assert str(info.value).startswith(reported), str(info.value)
        assert str(path) not in str(info.value)
        assert info.value.location == next(iter(env))


def test_problems_of_file_and_environment_are_each_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "version = 2\n[server]\nport = 99999\n[topics]\nfacts = 'x'\n")
    monkeypatch.setenv("RUNE_CACHE__MAX_ENTRIES", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert f"{path}: server.port: Input should be less than or equal to 65535" in text
    assert "RUNE_CACHE__MAX_ENTRIES: Input should be greater than or equal to 0" in text
    assert info.value.location is None  # two sources: each problem names its own
    # a section's check blames the file and the variable that both set something in it
    monkeypatch.delenv("RUNE_CACHE__MAX_ENTRIES")
    monkeypatch.setenv("RUNE_SERVER__PORT", "9000")  # overrides the file's bad port
    monkeypatch.setenv("RUNE_TOPICS__REQUESTS", "x")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}, RUNE_TOPICS__REQUESTS: topics: Value error")
    # flags are named as flags
    monkeypatch.delenv("RUNE_TOPICS__REQUESTS")
    with pytest.raises(ConfigError, match=r"^flags: cache\.max_entries: Input should be greater"):
        load_settings(path, {"cache": {"max_entries": -5}, "topics": {"facts": "y"}})


def test_variables_of_other_tools_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``RUNE_KAFKA_BOOTSTRAP`` (scripts/test) and ``RUNE_WORKER_INDEX`` (rune serve's
    workers) have no ``__``: they name no setting and are left alone."""
    monkeypatch.setenv("RUNE_KAFKA_BOOTSTRAP", "localhost:1")
    monkeypatch.setenv("RUNE_WORKER_INDEX", "1")
    monkeypatch.setenv("RUNE_EMBEDDED_LOG__RETENTION_BYTES", "4096")
    s = load_settings()
    assert s.embedded and s.embedded_log.retention_bytes == 4096


def test_version_1_file_is_migrated(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'group_id = "authz"\nkafka = "broker:9092"\ningest_batch = 7\ncache_entries = 5\n'
        'changefeed_relations = ["member_of"]\n[topics]\nfacts = "prod.rune.facts"\n',
    )
    loaded = load(path)
    s = loaded.settings
    assert (s.kafka.bootstrap, s.kafka.group_id) == ("broker:9092", "authz")
    assert s.stream.ingest_batch == 7 and s.cache.max_entries == 5
    assert s.stream.changefeed_relations == ("member_of",)
    assert s.topics.facts == "prod.rune.facts"
    assert any("version 1 layout migrated" in n for n in loaded.notes)
    assert any("group_id -> [kafka] group_id" in n for n in loaded.notes)


def test_version_1_unknown_key_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="group_idd"):
        load_settings(write(tmp_path, 'group_idd = "x"\n'))


v1_values = st.fixed_dictionaries(
    {},
    optional={
        "group_id": st.text("abc", min_size=1, max_size=5),
        "client_id": st.text("xyz", min_size=1, max_size=5),
        "partitions": st.integers(1, 64),
        "ingest_batch": st.integers(1, 10_000),
        "serve_batch": st.integers(1, 10_000),
        "token_wait_s": st.floats(0, 60),
        "max_waiting": st.integers(1, 10**6),
        "cache_entries": st.integers(0, 10**6),
        "changefeed_relations": st.lists(st.sampled_from(["a", "b", "member_of"]), max_size=3),
        "kafka": st.sampled_from(["h:1", "broker:9092"]),
    },
)


@given(v1_values)
def test_migration_keeps_every_version_1_value(doc: dict[str, object]) -> None:
    migrated, notes = migrate(doc)
    s = load_settings(None, migrated)
    for key, value in doc.items():
        section, name = _V1_MOVES[key]
        got = getattr(getattr(s, section), name)
        assert (list(got) if isinstance(got, tuple) else got) == value, key
    assert len(notes) == len(doc) + 1


def test_every_key_is_documented() -> None:
    text = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    s = load_settings()
    for section in type(s).model_fields:
        if section == "version":
            continue
        for name in type(getattr(s, section)).model_fields:
            env = f"RUNE_{section.upper()}__{name.upper()}"
            assert f"| `{section}.{name}` | `{env}` |" in text, f"{section}.{name} undocumented"
