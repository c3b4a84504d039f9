"""deploy/kafka/broker on bad input and in failure: clear messages, right exit codes, and no
broker process left behind. Each test uses its own run folder and ports, so it never touches
the session's broker (tests/integration/conftest.py); the jar cache (RUNE_KAFKA_HOME) is shared.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

REPO_ROOT = Path(__file__).resolve().parents[1]
BROKER = REPO_ROOT / "deploy" / "kafka" / "broker"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_broker(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BROKER), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def java_processes_of(run_dir: Path) -> list[int]:
    """Pids of processes whose command line names something in ``run_dir``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(run_dir).encode() in cmdline and b"java" in cmdline:
            found.append(int(proc.name))
    return found


@pytest.fixture
def broker_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a broker on its own ports and run folder (same jar cache)."""
    env = dict(os.environ)
    env.pop("RUNE_KAFKA_BOOTSTRAP", None)
    env["RUNE_KAFKA_PORT"] = str(free_port())
    env["RUNE_KAFKA_CONTROLLER_PORT"] = str(free_port())
    env["RUNE_KAFKA_RUN"] = str(tmp_path / "run")
    env["RUNE_KAFKA_START_TIMEOUT"] = "60"
    return env


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A plain Python socket listening on a loopback port (someone else's server)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        yield s
    finally:
        s.close()


def path_without(tmp_path: Path, *excluded: str) -> str:
    """A PATH of one folder holding links to every program on PATH except ``excluded``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        folder = Path(entry)
        if not folder.is_dir():
            continue
        for program in folder.iterdir():
            link = bin_dir / program.name
            if program.name in excluded or link.exists() or link.is_symlink():
                continue
            if program.is_file() and os.access(program, os.X_OK):
                link.symlink_to(program)
    return str(bin_dir)


def test_unknown_subcommand_prints_usage_and_exits_2(broker_env: dict[str, str]) -> None:
    result = run_broker("reboot", env=broker_env)
    assert result.returncode == 2
    assert "unknown sub-command 'reboot'" in result.stderr
    assert "usage: deploy/kafka/broker start|restart|stop|status" in result.stderr
    assert result.stdout == ""


def test_no_subcommand_prints_usage_and_exits_2(broker_env: dict[str, str]) -> None:
    result = run_broker(env=broker_env)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_status_and_stop_when_not_running(broker_env: dict[str, str]) -> None:
    status = run_broker("status", env=broker_env)
    assert status.returncode == 3
    assert status.stdout.startswith("not running")
    stop = run_broker("stop", env=broker_env)
    assert stop.returncode == 0
    assert "not running" in stop.stderr


def test_bad_port_setting_is_refused(broker_env: dict[str, str]) -> None:
    broker_env["RUNE_KAFKA_PORT"] = "90x2"
    result = run_broker("start", env=broker_env)
    assert result.returncode == 1
    assert "RUNE_KAFKA_PORT='90x2' is not a port number" in result.stderr


def test_start_on_a_taken_port_fails_clearly(
    broker_env: dict[str, str], listener: socket.socket, tmp_path: Path
) -> None:
    port = listener.getsockname()[1]
    broker_env["RUNE_KAFKA_PORT"] = str(port)
    result = run_broker("start", env=broker_env)
    assert result.returncode == 1
    assert f"broker port 127.0.0.1:{port} is already in use by another process" in result.stderr
    assert "RUNE_KAFKA_PORT" in result.stderr
    assert result.stdout == ""
    assert java_processes_of(tmp_path / "run") == []
    assert not (tmp_path / "run" / "broker.pid").exists()
    # The other server is untouched.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def test_start_on_a_taken_controller_port_fails_clearly(
    broker_env: dict[str, str], listener: socket.socket, tmp_path: Path
) -> None:
    port = listener.getsockname()[1]
    broker_env["RUNE_KAFKA_CONTROLLER_PORT"] = str(port)
    result = run_broker("start", env=broker_env)
    assert result.returncode == 1
    assert f"controller port 127.0.0.1:{port} is already in use" in result.stderr
    assert "RUNE_KAFKA_CONTROLLER_PORT" in result.stderr
    assert java_processes_of(tmp_path / "run") == []


def test_missing_java_is_reported(broker_env: dict[str, str], tmp_path: Path) -> None:
    broker_env["PATH"] = path_without(tmp_path, "java")
    broker_env.pop("JAVA_HOME", None)
    broker_env.pop("RUNE_KAFKA_JAVA", None)
    result = run_broker("start", env=broker_env)
    assert result.returncode == 1
    assert "java not found" in result.stderr
    assert "Java 17+" in result.stderr
    assert result.stdout == ""


def test_too_old_java_is_reported(broker_env: dict[str, str], tmp_path: Path) -> None:
    fake_java = tmp_path / "java"
    fake_java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.21\" 2023-10-17' >&2\n")
    fake_java.chmod(0o755)
    broker_env["RUNE_KAFKA_JAVA"] = str(fake_java)
    result = run_broker("start", env=broker_env)
    assert result.returncode == 1
    assert "is Java 11" in result.stderr
    assert "needs Java 17 or newer" in result.stderr


def test_missing_maven_is_reported_when_jars_are_not_cached(
    broker_env: dict[str, str], tmp_path: Path
) -> None:
    broker_env["RUNE_KAFKA_HOME"] = str(tmp_path / "empty-cache")
    broker_env["PATH"] = path_without(tmp_path, "mvn")
    result = run_broker("start", env=broker_env)
    assert result.returncode == 1
    assert "mvn (Apache Maven) not found" in result.stderr
    assert java_processes_of(tmp_path / "run") == []


def test_stop_ignores_a_pid_file_that_is_not_its_broker(
    broker_env: dict[str, str], tmp_path: Path
) -> None:
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], stdin=subprocess.DEVNULL
    )
    try:
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / "broker.pid").write_text(f"{bystander.pid}\n")
        assert run_broker("status", env=broker_env).returncode == 3
        stop = run_broker("stop", env=broker_env)
        assert stop.returncode == 0
        assert "stale pid file" in stop.stderr
        assert bystander.poll() is None  # still alive: not ours to stop
        assert not (run_dir / "broker.pid").exists()
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.integration
def test_failed_launch_kills_the_broker_and_shows_its_log(
    broker_env: dict[str, str], listener: socket.socket, tmp_path: Path
) -> None:
    # Skip the early port check so that the JVM really starts and then fails to bind.
    broker_env["RUNE_KAFKA_PORT"] = str(listener.getsockname()[1])
    broker_env["RUNE_KAFKA_SKIP_PORT_CHECK"] = "1"
    broker_env["RUNE_KAFKA_START_TIMEOUT"] = "45"
    result = run_broker("start", env=broker_env, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "did not become ready" in result.stderr
    assert "---- last lines of" in result.stderr
    assert result.stdout == ""
    assert java_processes_of(tmp_path / "run") == []
    assert not (tmp_path / "run" / "broker.pid").exists()


@pytest.mark.integration
def test_start_status_restart_stop_on_its_own_port(
    broker_env: dict[str, str], tmp_path: Path
) -> None:
    address = f"127.0.0.1:{broker_env['RUNE_KAFKA_PORT']}"
    run_dir = tmp_path / "run"
    try:
        start = run_broker("start", env=broker_env, timeout=600)
        assert start.returncode == 0, start.stderr
        assert start.stdout == f"{address}\n"
        [pid] = java_processes_of(run_dir)
        assert (run_dir / "broker.pid").read_text().strip() == str(pid)

        status = run_broker("status", env=broker_env)
        assert status.returncode == 0
        assert f"pid {pid}" in status.stdout

        again = run_broker("start", env=broker_env)  # idempotent
        assert again.returncode == 0, again.stderr
        assert again.stdout == f"{address}\n"
        assert "already running" in again.stderr
        assert java_processes_of(run_dir) == [pid]

        admin = AdminClient({"bootstrap.servers": address})
        admin.create_topics([NewTopic("kept", 1, 1)])["kept"].result(30)

        stop = run_broker("stop", env=broker_env)
        assert stop.returncode == 0, stop.stderr
        assert java_processes_of(run_dir) == []
        assert run_broker("status", env=broker_env).returncode == 3

        restart = run_broker("restart", env=broker_env, timeout=600)  # same cluster again
        assert restart.returncode == 0, restart.stderr
        assert "kept" in AdminClient({"bootstrap.servers": address}).list_topics(timeout=10).topics
        assert run_broker("stop", env=broker_env).returncode == 0

        fresh = run_broker("start", env=broker_env, timeout=600)  # a new, empty cluster
        assert fresh.returncode == 0, fresh.stderr
        fresh_topics = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10).topics
        assert "kept" not in fresh_topics
        assert run_broker("stop", env=broker_env).returncode == 0
    finally:
        for pid in java_processes_of(run_dir):  # only if an assertion failed midway
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while java_processes_of(run_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
