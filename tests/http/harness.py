"""A real ``rune serve`` HTTP server on loopback (port 0), on the embedded log, in the test's
event loop, with an aiohttp client; or ``rune serve`` as a process (:func:`rune_serve`)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from rune.config import load_settings
from rune.connectors.base import Outgoing
from rune.connectors.embedded import EmbeddedLog
from rune.http.host import HttpHost
from rune.streams.app import topic_specs

BUNDLE = {
    "version": 1,
    "datalog": "allow(P, A, R) :- ok(P, A, R).\nok_count(P) :- ok(P, _, _).",
    "cedar": '@id("readers")\npermit(principal, action == Action::"read", resource)\n'
    "when { resource has public && resource.public };",
}
ADMIN = "admin-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 60.0


def uid(t: str, i: str) -> dict[str, str]:
    return {"type": t, "id": i}


def ok_fact(p: str, a: str, r: str, op: str = "assert") -> dict[str, Any]:
    return {"op": op, "fact": ["ok", uid("User", p), uid("Action", a), uid("Doc", r)]}


def request(p: str, a: str, r: str, **more: Any) -> dict[str, Any]:
    return {
        "principal": uid("User", p),
        "action": uid("Action", a),
        "resource": uid("Doc", r),
        **more,
    }


@dataclass
class Http:
    server: HttpHost
    session: aiohttp.ClientSession
    log: EmbeddedLog

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def call(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        async with self.session.request(method, self.url + path, data=data, **kw) as resp:
            text = await resp.read()
            try:
                parsed: Any = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = text.decode()
            return resp.status, parsed, resp


@asynccontextmanager
async def serving(
    bundle: dict[str, Any] | None = BUNDLE,
    events: Sequence[dict[str, Any]] = (),
    config: Path | None = None,
    **sections: dict[str, Any],
) -> AsyncIterator[Http]:
    overrides: dict[str, Any] = {
        "server": {"port": 0, "admin_token": ADMIN},
        "kafka": {"partitions": 2},
        "logging": {"decisions": "none"},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    settings = load_settings(config, overrides)
    log = EmbeddedLog()
    for spec in topic_specs(settings):
        log.create_topic(spec.name, spec.partitions, spec.configs)
    if bundle is not None:
        log.append(Outgoing(settings.topics.policies, b"default", orjson.dumps(bundle)))
    from rune.streams.keys import event_key

    for event in events:
        log.append(Outgoing(settings.topics.facts, event_key(event), orjson.dumps(event)))
    server = HttpHost(settings, log, config_path=config, overrides=overrides, notice=lambda m: None)
    task = asyncio.create_task(server.run())

    async def up() -> None:
        await server.listening.wait()
        await server.service.ctx.ready.wait()

    await asyncio.wait([task, asyncio.create_task(up())], return_when="FIRST_COMPLETED")
    if task.done():
        task.result()
    async with aiohttp.ClientSession() as session:
        try:
            yield Http(server, session, log)
        finally:
            server.stop()
            await asyncio.wait_for(task, 10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


@contextmanager
def rune_serve(env: Mapping[str, str], *args: str) -> Iterator[str]:
    """``python -m rune.cli serve`` on a free loopback port (embedded log, the bundled example
    unless ``args`` say otherwise) with ``env`` added to the environment; yields its URL once
    ready, and stops it (SIGTERM) afterwards."""
    port = free_port()
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rune.cli", "serve", "--port", str(port), *args],
        env={**os.environ, "PYTHONPATH": path, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while not _ready(url):
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"rune serve exited with {proc.returncode}: {err}")
            assert time.monotonic() < deadline, "rune serve did not become ready"
            time.sleep(0.05)  # polling readiness, bounded by the deadline
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
