"""Static checks of deploy/Dockerfile and deploy/k8s/ (no network, no Docker, no cluster).

The manifests must agree with each other and with the code: probe paths are the HTTP routes
of the ops spec, probe ports resolve to the container port the Service targets and the
settings file listens on; the Job and the Deployment run real ``rune`` commands; the
ConfigMap's ``rune.toml`` loads with ``rune.config.load_settings``; the Secret-fed variables
are settings ``load_settings`` reads; the Dockerfile builds in two stages and runs unprivileged
with a health check that works against a local HTTP server.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from rune.cli import main
from rune.config import load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"

LIVE = "/health/live"  # ops spec: GET /health/live -> 200 {"status": "alive"}
READY = "/health/ready"  # ops spec: GET /health/ready -> 200 ready, 503 not (yet)
PORT = 8080
SECRET_ENV = {
    "RUNE_SERVER__ADMIN_TOKEN": ("server", "admin_token"),
    "RUNE_LOGGING__PSEUDONYM_KEY": ("logging", "pseudonym_key"),
}


# -- helpers -----------------------------------------------------------------------------------


def documents() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(K8S.glob("*.y*ml")):
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        out[path.name] = docs
    return out


def one(kind: str) -> dict[str, Any]:
    found = [d for docs in documents().values() for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [c] = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def resolve_port(c: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (a number or a container port's name) as a number."""
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    assert named, f"port {port!r} is not a named port of container {c['name']}"
    return int(named[0])


def config_toml() -> str:
    cm = one("ConfigMap")
    text = cm["data"]["rune.toml"]
    assert isinstance(text, str)
    return text


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RUNE_"):
            monkeypatch.delenv(name)


def command_of(argv: list[str]) -> click.Command:
    """The click command ``rune argv...`` would run (its arguments are checked too)."""
    assert argv and argv[0] == "rune", argv
    ctx = main.make_context("rune", argv[1:], resilient_parsing=True)
    cmd: click.Command = main
    args = argv[1:]
    while isinstance(cmd, click.Group):
        wanted = args[0] if args else None
        name, sub, args = cmd.resolve_command(ctx, args)
        assert sub is not None, f"no command {wanted!r} in {argv}"
        cmd = sub
        ctx = cmd.make_context(name or "", list(args), parent=ctx, resilient_parsing=True)
    return cmd


def options_of(cmd: click.Command) -> set[str]:
    return {opt for p in cmd.params for opt in getattr(p, "opts", [])}


# -- YAML --------------------------------------------------------------------------------------


def test_every_manifest_parses_and_names_a_kubernetes_object() -> None:
    docs = documents()
    assert set(docs) >= {
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "topics-job.yaml",
        "kustomization.yaml",
    }
    for name, objs in docs.items():
        assert objs, f"{name} is empty"
        for obj in objs:
            assert isinstance(obj, dict), name
            assert obj.get("apiVersion") and obj.get("kind"), name
            if obj["kind"] != "Kustomization":
                assert obj["metadata"]["name"], name
                assert "namespace" not in obj["metadata"], f"{name} must not pin a namespace"


def test_kustomization_lists_every_manifest_and_sets_no_namespace() -> None:
    kust = one("Kustomization")
    others = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == others
    assert "namespace" not in kust
    images = {i["name"] for i in kust.get("images", [])}
    for kind in ("Deployment", "Job"):
        image = container(one(kind))["image"]
        assert image.split(":")[0] in images, f"{kind} image {image} not managed by kustomize"


# -- the Deployment, its probes and the Service ------------------------------------------------


def test_probes_use_the_spec_health_routes_on_the_served_port() -> None:
    c = container(one("Deployment"))
    assert c["livenessProbe"]["httpGet"]["path"] == LIVE
    assert c["readinessProbe"]["httpGet"]["path"] == READY
    assert c["startupProbe"]["httpGet"]["path"] == READY  # the initial catch-up
    settings = tomllib.loads(config_toml())["server"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        port = resolve_port(c, c[probe]["httpGet"]["port"])
        assert port == PORT == settings["port"], probe
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, "catch-up budget"


def test_service_targets_the_container_port_of_the_selected_pods() -> None:
    deployment, service = one("Deployment"), one("Service")
    c = container(deployment)
    [port] = service["spec"]["ports"]
    assert port["name"] == "http" and port["port"] == PORT
    assert resolve_port(c, port["targetPort"]) == PORT
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_deployment_runs_rune_serve_with_the_mounted_config() -> None:
    deployment = one("Deployment")
    c = container(deployment)
    argv = [*c.get("command", dockerfile_exec("ENTRYPOINT")), *c["args"]]
    assert argv[:2] == ["rune", "serve"]
    serve = command_of(argv)
    assert "--config" in options_of(serve)
    config_path = Path(argv[argv.index("--config") + 1])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    [name] = [n for n, m in mounts.items() if Path(m["mountPath"]) == config_path.parent]
    assert mounts[name].get("readOnly") is True
    assert volumes[name]["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    assert config_path.name in one("ConfigMap")["data"]


def test_resources_are_sized_for_the_drive_workload() -> None:
    res = container(one("Deployment"))["resources"]
    assert res["requests"] == {"cpu": "1", "memory": "1Gi"}
    assert res["limits"] == {"cpu": "2", "memory": "2Gi"}
    text = (K8S / "deployment.yaml").read_text(encoding="utf-8")
    assert "4.3M" in text and "200 B" in text, "the sizing comment explains the numbers"


def test_shutdown_budget_covers_pre_stop_and_the_drain(clean_env: None, tmp_path: Path) -> None:
    spec = one("Deployment")["spec"]["template"]["spec"]
    c = container(one("Deployment"))
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    path = tmp_path / "rune.toml"
    path.write_text(config_toml(), encoding="utf-8")
    drain = load_settings(path).stream.shutdown_timeout_s
    # preStop, then two bounded drains (HTTP requests, then the stream service's batches),
    # then a margin for the Kafka clients to close (rune/http/host.py)
    assert spec["terminationGracePeriodSeconds"] >= float(pre_stop[1]) + 2 * drain + 5


def test_pods_run_unprivileged_with_a_read_only_root() -> None:
    uid = dockerfile_user()
    for kind in ("Deployment", "Job"):
        pod = one(kind)["spec"]["template"]["spec"]
        c = container(one(kind))
        assert pod["securityContext"]["runAsNonRoot"] is True, kind
        assert pod["securityContext"]["runAsUser"] == uid != 0, kind
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, kind
        assert sc["allowPrivilegeEscalation"] is False, kind
        assert sc["capabilities"]["drop"] == ["ALL"], kind
        tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert tmp, f"{kind}: a writable /tmp under the read-only root"


def test_secret_env_feeds_real_settings(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {e["name"]: e for e in container(one("Deployment"))["env"]}
    for name in SECRET_ENV:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"], name
        assert "value" not in env[name], f"{name} must come from a Secret, not the manifest"
        monkeypatch.setenv(name, "s3cret-value-0123456789")
    settings = load_settings(None)
    for section, key in SECRET_ENV.values():
        value = getattr(getattr(settings, section), key)
        assert value.get_secret_value() == "s3cret-value-0123456789", f"{section}.{key}"


# -- the ConfigMap -----------------------------------------------------------------------------


def test_configmap_rune_toml_is_v2_and_loads(clean_env: None, tmp_path: Path) -> None:
    text = config_toml()
    doc = tomllib.loads(text)
    assert doc["version"] == 2
    path = tmp_path / "rune.toml"
    path.write_text(text, encoding="utf-8")
    settings = load_settings(path)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == PORT
    assert re.fullmatch(r"[a-z0-9.-]+\.svc(\.cluster\.local)?:\d+", settings.kafka.bootstrap)
    assert settings.server.admin_token.get_secret_value() == "", "no secret in the ConfigMap"
    assert settings.logging.pseudonym_key.get_secret_value() == ""


# -- the topics Job ----------------------------------------------------------------------------


def test_job_runs_rune_topics_create_with_the_same_image_and_config() -> None:
    job, deployment = one("Job"), one("Deployment")
    c = container(job)
    argv = [*c.get("command", dockerfile_exec("ENTRYPOINT")), *c["args"]]
    assert argv[:3] == ["rune", "topics", "create"]
    create = command_of(argv)
    assert {"--config", "--kafka"} <= options_of(create)
    assert c["image"] == container(deployment)["image"]
    config_path = Path(argv[argv.index("--config") + 1])
    assert config_path == Path("/etc/rune/rune.toml")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    cm = volumes[mounts[str(config_path.parent)]]["configMap"]["name"]
    assert cm == one("ConfigMap")["metadata"]["name"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


# -- the Dockerfile ----------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "a continuation runs off the end"
    return out


def dockerfile_user() -> int:
    users = [args for word, args in runtime_stage() if word == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "numeric uid, so Kubernetes' runAsNonRoot can verify it"
    return int(uid)


def dockerfile_exec(instruction: str) -> list[str]:
    """The exec form (JSON list) of the runtime stage's last ``instruction``."""
    found = [args for word, args in runtime_stage() if word == instruction]
    assert found, f"the runtime stage has no {instruction}"
    form = json.loads(found[-1])
    assert isinstance(form, list) and all(isinstance(w, str) for w in form), found[-1]
    return form


def runtime_stage() -> list[tuple[str, str]]:
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def test_dockerfile_is_multi_stage_from_a_wheel_builder() -> None:
    ins = instructions()
    froms = [args.split() for word, args in ins if word == "FROM"]
    assert len(froms) >= 2
    stages = {f[2].lower(): f[0] for f in froms if len(f) == 3 and f[1].upper() == "AS"}
    assert "builder" in stages
    assert froms[-1][0] == "python:3.11-slim"
    builder_runs = " ".join(
        a for w, a in ins[: ins.index(("FROM", " ".join(froms[-1])))] if w == "RUN"
    )
    assert "pip wheel" in builder_runs
    runtime = " ".join(a for _, a in runtime_stage())
    assert "from=builder" in runtime.replace("--from=builder", "from=builder")
    assert "--no-index" in runtime


def test_dockerfile_runtime_is_non_root_exposes_8080_and_runs_rune_serve() -> None:
    stage = runtime_stage()
    assert dockerfile_user() != 0
    users = [args for word, args in stage if word == "USER"]
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(w == "EXPOSE" and args.split() == [str(PORT)] for w, args in stage)
    assert dockerfile_exec("ENTRYPOINT") == ["rune"]
    assert dockerfile_exec("CMD") == ["serve", "--config", "/etc/rune/rune.toml"]


def test_image_command_is_a_rune_command_taking_the_config() -> None:
    argv = [*dockerfile_exec("ENTRYPOINT"), *dockerfile_exec("CMD")]
    assert "--config" in options_of(command_of(argv))


def image_default_config() -> str:
    """The rune.toml the runtime stage writes (printf '%s\\n' 'line' ... > /etc/rune/rune.toml)."""
    [run] = [a for w, a in runtime_stage() if w == "RUN" and "/etc/rune/rune.toml" in a]
    words = shlex.split(run)
    start = words.index("printf") + 2  # skip the format
    end = words.index(">")
    return "\n".join(words[start:end]) + "\n"


def test_image_default_config_listens_on_every_interface(clean_env: None, tmp_path: Path) -> None:
    path = tmp_path / "rune.toml"
    path.write_text(image_default_config(), encoding="utf-8")
    settings = load_settings(path)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == PORT


def healthcheck_code() -> str:
    [hc] = [a for w, a in runtime_stage() if w == "HEALTHCHECK"]
    assert "CMD" in hc
    exec_form = json.loads(hc[hc.index("CMD") + 3 :].strip())
    assert exec_form[:2] == ["python", "-c"], "no curl in the slim image: Python does it"
    code = exec_form[2]
    assert isinstance(code, str) and LIVE in code
    return code


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(self.status if self.path == LIVE else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "alive"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200, "paths": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_passes_on_live_and_fails_otherwise(
    health_server: tuple[int, type[_Health]],
) -> None:
    port, handler = health_server
    code = healthcheck_code()
    env = {**os.environ, "RUNE_SERVER__PORT": str(port)}
    ok = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert handler.paths == [LIVE]
    handler.status = 503
    failing = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30)
    assert failing.returncode != 0
