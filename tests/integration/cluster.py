"""Helpers of the Redis integration tests: a redis-server of their own, factpatch processes, waits.

Everything here starts real processes: `redis-server` on a free port (`--save ""`, AOF only when
asked for), `python -m cli api` and `python -m cli worker --role ...` with FACTPATCH_
variables, each writing its output to a file under the test's folder (shown when a wait fails).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests import helpers
from tests.helpers import free_port

REDIS_SERVER = shutil.which("redis-server")

# Edits land in a few milliseconds on the tiny model: two ft steps, no guard worth the name.
FAST_EDITORS = {"ft": {"steps": 2, "lr": 2e-2, "norm_constraint": 1.0, "layer_fraction": 0.0}}


def need_redis_server() -> str:
    """The redis-server binary. Without one the test is skipped, or fails when FACTPATCH_REQUIRE_REDIS=1
    (CI: .ci/run), like the postgres tests under FACTPATCH_REQUIRE_POSTGRES=1 (tests/conftest.py)."""
    if REDIS_SERVER is None:
        reason = "no redis-server binary on PATH"
        if os.environ.get("FACTPATCH_REQUIRE_REDIS") == "1":
            pytest.fail(f"FACTPATCH_REQUIRE_REDIS=1 but {reason}")
        pytest.skip(f"{reason}; install redis-server to run the redis tests")
    return REDIS_SERVER


# `tests.helpers.wait_until`, where an HTTP or Redis call that fails (a process not up yet, restarting)
# counts as "not yet".
wait_until = functools.partial(helpers.wait_until, ignore=(httpx.TransportError, redis.RedisError))


class RedisServer:
    """A redis-server of the test's own; `restart()` keeps the port (and the AOF when persistent)."""

    def __init__(self, folder: Path, *, persistent: bool = False) -> None:
        self.binary = need_redis_server()
        self.folder, self.persistent = folder, persistent
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.persistent else "no", "--dir", str(self.folder)]
        with (self.folder / "redis.log").open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_until(client.ping, timeout=10, what="redis-server to answer PING")
        client.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


class Process:
    """A factpatch sub-process; its output goes to `<folder>/<name>.log`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.logfile = folder / f"{name}.log"
        with self.logfile.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "cli", *args], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, like a crashed host."""
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def output(self, tail: int = 4000) -> str:
        text = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
        return f"--- {self.name} ---\n{text[-tail:]}"


@dataclass
class Cluster:
    """Redis + edit log + factpatch processes, all torn down at the end of the test."""

    folder: Path
    redis: RedisServer
    model_dir: Path
    database_url: str | None = None
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[Process] = field(default_factory=list)
    api_port: int = field(default_factory=free_port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, *, data_dir: str = "data", **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
        env.update(
            FACTPATCH_MODEL=str(self.model_dir), FACTPATCH_DATA_DIR=str(self.folder / data_dir),
            FACTPATCH_EDITOR="ft", FACTPATCH_EDITORS=json.dumps(FAST_EDITORS),
            FACTPATCH_GUARD__MAX_LOCALITY_CHANGED="1.0", FACTPATCH_GUARD__NEIGHBOURS="0",
            FACTPATCH_GUARD__STANDING="[]", FACTPATCH_LOG__SNAPSHOT_EVERY="4",
            FACTPATCH_REDIS_URL=self.redis.url, FACTPATCH_QUEUE__PREFIX=self.prefix,
            FACTPATCH_WRITER__HEARTBEAT_SECONDS="0.5", FACTPATCH_QUERY_TIMEOUT="20",
            OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
        )
        if self.database_url:
            env["FACTPATCH_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start_api(self) -> Process:
        env = self.env(FACTPATCH_PORT=str(self.api_port))
        proc = Process(f"api-{len(self.procs)}", ["api"], env, self.folder)
        self.procs.append(proc)
        wait_until(lambda: httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200,
                   timeout=60, what="the api to listen", explain=self.explain)
        return proc

    def start_worker(self, worker_id: str, *, role: str = "writer", data_dir: str = "data") -> Process:
        env = self.env(data_dir=data_dir, FACTPATCH_WORKER_ID=worker_id)
        proc = Process(f"{worker_id}-{len(self.procs)}", ["worker", "--role", role], env, self.folder)
        self.procs.append(proc)
        return proc

    def workers(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.api_url}/v1/model", timeout=5)
        return list(response.json()["workers"]) if response.status_code == 200 else []

    def wait_worker(self, worker_id: str, *, role: str, revision: int | None = None, timeout: float = 120) -> None:
        def there() -> bool:
            return any(w["id"] == worker_id and w["role"] == role and (revision is None or w["revision"] == revision)
                       for w in self.workers())

        wait_until(there, timeout=timeout, what=f"{worker_id} as {role} at revision {revision}",
                   every=0.2, explain=self.explain)

    def explain(self) -> str:
        return "\n".join(p.output() for p in self.procs[-4:])

    def close(self) -> None:
        """SIGTERM every process at once (their shutdowns overlap), then wait for each."""
        live = [proc for proc in self.procs if proc.alive]
        for proc in live:
            proc.proc.send_signal(signal.SIGTERM)
        for proc in live:
            proc.stop(timeout=15)
        self.redis.kill()


@contextmanager
def cluster(folder: Path, model_dir: Path, *, database_url: str | None = None, persistent: bool = False,
            **extra_env: str) -> Iterator[Cluster]:
    server = RedisServer(folder / "redis", persistent=persistent).start()
    running = Cluster(folder=folder, redis=server, model_dir=model_dir, database_url=database_url,
                      extra_env=dict(extra_env))
    try:
        yield running
    finally:
        running.close()


def postgres_schema_url(url: str, schema: str) -> str:
    """A URL whose connections use `schema` (created here; the fixture drops it)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    return f"{url}?options=-csearch_path%3D{schema}"


def submit_edit(client: httpx.Client, body: dict[str, Any], *, key: str, timeout: float = 120) -> tuple[str, int]:
    """POST one edit with an Idempotency-Key, retrying through outages; (edit id, status code)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = client.post("/v1/edits", json=body, headers={"Idempotency-Key": key})
            if response.status_code in (200, 202):
                return str(response.json()["id"]), response.status_code
            assert response.status_code >= 500, response.text
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"edit {key} was never accepted")
        time.sleep(0.2)
