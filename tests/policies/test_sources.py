"""Bundles from source directories (rune/policies/sources.py, rune bundle build, --bundle DIR)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from rune import Authorizer
from rune.cli import main
from rune.ivm.values import EntityRef
from rune.policies.errors import BundleError
from rune.policies.refs import expand_refs, format_ref, parse_ref
from rune.policies.sources import BundleSourceError, read_bundle

GROUPS = """\
// membership
member_of(U, G) :- member(U, G).
"""
DOCS = """\
.on_demand allow.
allow(U, Action::"read", D) :- member_of(U, G), reader(G, D).
"""
DOCS_CEDAR = """\
@id("owners-write")
permit(principal, action == Action::"write", resource is Doc)
when { resource has owner && resource.owner == principal };
"""
ADMIN_CEDAR = """\
// admins read everything
permit(principal in Group::"admins", action == Action::"read", resource);
"""


def _dir(tmp_path: Path, **files: str) -> Path:
    d = tmp_path / "policies"
    for name, text in files.items():
        path = d / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return d


def _reject(source_dir: Path) -> str:
    src = read_bundle(source_dir)
    with pytest.raises(BundleError) as info:
        Authorizer().load_bundle(src.bundle)
    return src.locate(info.value)


def test_directory_concatenates_sources_in_path_order(tmp_path: Path) -> None:
    d = _dir(
        tmp_path,
        **{"b_docs.dl": DOCS, "a_groups.dl": GROUPS, "z__admin.cedar": ADMIN_CEDAR},
        **{"docs.cedar": DOCS_CEDAR, "bundle.toml": 'version = 4\nname = "drive"\n'},
        **{"README.md": "not a source", ".hidden__x.dl": "not even parsed ("},
    )
    src = read_bundle(d)
    assert src.name == "drive"
    assert src.bundle["version"] == 4
    assert src.bundle["datalog"] == GROUPS + DOCS
    assert src.bundle["cedar"] == DOCS_CEDAR + ADMIN_CEDAR
    assert "schema" not in src.bundle
    az = Authorizer()
    az.load_bundle(src.bundle)
    assert az.policy_version == 4
    assert read_bundle(d, version=9).bundle["version"] == 9
    assert src.policy_position("policy1") == f"{d}/z/admin.cedar:2:1"
    assert src.position("datalog", 3) == f"{d}/b_docs.dl:1"


def test_datalog_error_points_at_the_file_and_its_line(tmp_path: Path) -> None:
    bad = DOCS + "orphan(X) :- member_of(Y, Z).\n"
    d = _dir(tmp_path, **{"a_groups.dl": GROUPS, "b_docs.dl": bad})
    assert _reject(d).startswith(f"{d}/b_docs.dl:3:1: unsafe rule")
    d2 = _dir(tmp_path / "2", **{"a.dl": GROUPS, "b.dl": "ok(X) :- member_of(X, _)\nfoo(."})
    assert _reject(d2).startswith(f"{d2}/b.dl:2:")


def test_cedar_parse_and_validation_errors_point_at_the_file(tmp_path: Path) -> None:
    broken = ADMIN_CEDAR + "permit(principal, action, resource) when { resource. };\n"
    d = _dir(tmp_path, **{"a.cedar": DOCS_CEDAR, "b.cedar": broken})
    assert _reject(d).startswith(f"{d}/b.cedar:3:1: policy2: ")
    schema = """\
entity Group;
entity User in [Group];
entity Doc { owner: User };
action read, write appliesTo { principal: User, resource: Doc };
"""
    invalid = 'permit(principal, action == Action::"write", resource) when { resource.size > 3 };\n'
    d2 = _dir(
        tmp_path / "2",
        **{"a.cedar": DOCS_CEDAR, "b.cedar": invalid, "s.cedarschema": schema},
    )
    message = _reject(d2)
    assert message.startswith(f"{d2}/b.cedar:1:1: policy1: "), message
    d3 = _dir(tmp_path / "3", **{"a.cedar": DOCS_CEDAR, "s.cedarschema": "entity ("})
    assert _reject(d3).startswith(f"{d3}/s.cedarschema: Cedar schema does not parse")


def test_json_schema_and_bad_directories(tmp_path: Path) -> None:
    schema = {"": {"entityTypes": {"User": {}, "Doc": {}}, "actions": {}}}
    d = _dir(tmp_path, **{"a.cedar": ADMIN_CEDAR.replace("Group", "User"), "schema.json": "{}"})
    (d / "schema.json").write_bytes(orjson.dumps(schema))
    assert read_bundle(d).bundle["schema"] == schema
    (d / "more.cedarschema").write_text("entity User;")
    with pytest.raises(BundleSourceError, match="more than one kind of schema"):
        read_bundle(d)
    empty = _dir(tmp_path / "e", **{"notes.txt": "x"})
    with pytest.raises(BundleSourceError, match=r"no \*\.dl or \*\.cedar"):
        read_bundle(empty)
    toml = _dir(tmp_path / "t", **{"a.dl": GROUPS, "bundle.toml": "version = 'x'"})
    with pytest.raises(BundleSourceError, match=r"bundle\.toml: 'version' must be"):
        read_bundle(toml)
    (toml / "bundle.toml").write_text("colour = 1")
    with pytest.raises(BundleSourceError, match="unknown key 'colour'"):
        read_bundle(toml)


def test_refs() -> None:
    assert parse_ref('App::User::"al\\"ice"') == EntityRef("App::User", 'al"ice')
    assert parse_ref('User::"\\u{e9}"') == EntityRef("User", "é")
    assert parse_ref("User::alice") is None
    assert parse_ref('user name::"x"') is None
    ref = EntityRef("User", 'a"b\\')
    assert parse_ref(format_ref(ref)) == ref
    doc = {
        "fact": ["member", 'User::"a"', "plain"],
        "entity": {"uid": 'Doc::"d"', "attrs": {"owner": 'User::"a"'}},
    }
    assert expand_refs(doc) == {
        "fact": ["member", {"type": "User", "id": "a"}, "plain"],
        "entity": {
            "uid": {"type": "Doc", "id": "d"},
            "attrs": {"owner": {"__entity": {"type": "User", "id": "a"}}},
        },
    }


def test_cli_bundle_build_and_check_with_a_directory(tmp_path: Path) -> None:
    d = _dir(tmp_path, **{"a.dl": GROUPS + DOCS, "b.cedar": ADMIN_CEDAR})
    out = tmp_path / "bundle.json"
    r = CliRunner().invoke(main, ["bundle", "build", str(d), "-o", str(out), "--version", "5"])
    assert r.exit_code == 0, r.output
    built = orjson.loads(out.read_bytes())
    assert built["version"] == 5 and built["cedar"] == ADMIN_CEDAR
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"op": "assert", "fact": ["member", {"type": "User", "id": "al"}, '
        '{"type": "Group", "id": "admins"}]}\n'
    )
    request = (
        '{"principal": {"type": "User", "id": "al"}, "action": {"type": "Action", "id": "read"}, '
        '"resource": {"type": "Doc", "id": "x"}}'
    )
    for bundle in (d, out):
        r = CliRunner().invoke(
            main, ["check", "--bundle", str(bundle), "--events", str(events), request]
        )
        assert r.exit_code == 0, r.output
        assert orjson.loads(r.stdout)["decision"] == "allow"
    (d / "c.dl").write_text("bad(X) :- member(Y, Z).\n")
    r = CliRunner().invoke(main, ["bundle", "build", str(d)])
    assert r.exit_code == 1
    assert f"{d}/c.dl:1:1: unsafe rule" in r.output
    r = CliRunner().invoke(main, ["check", "--bundle", str(d), request])
    assert r.exit_code == 1 and f"{d}/c.dl:1:1" in r.output


def test_rune_run_embedded_takes_a_directory(tmp_path: Path) -> None:
    d = _dir(tmp_path, **{"a.dl": GROUPS + DOCS, "b.cedar": ADMIN_CEDAR})
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"op": "assert", "fact": ["member", {"type": "User", "id": "al"}, '
        '{"type": "Group", "id": "g"}]}\n'
        '{"op": "assert", "fact": ["reader", {"type": "Group", "id": "g"}, '
        '{"type": "Doc", "id": "x"}]}\n'
    )
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        '{"id": "r1", "principal": {"type": "User", "id": "al"}, '
        '"action": {"type": "Action", "id": "read"}, "resource": {"type": "Doc", "id": "x"}}\n'
    )
    r = CliRunner().invoke(
        main,
        ["run", "--bundle", str(d), "--events", str(events), "--requests", str(requests)],
    )
    assert r.exit_code == 0, r.output
    [decision] = [orjson.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert decision["id"] == "r1" and decision["decision"] == "allow"
