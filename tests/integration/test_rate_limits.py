"""Per-key rate limits: the bucket arithmetic, the 429 an attacker sees, and the Redis buckets
that several API processes share (against a real redis-server of the test's own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contract.config import QueueConfig, RateLimitConfig, Settings
from contract.protocol import new_id
from service.main import create_app
from service.ratelimit import MemoryRateLimiter, RedisRateLimiter, gcra
from store.log import SqliteEditLog
from store.queue import MemoryTransport
from store.queue.redis import RedisTransport
from tests.helpers import bearer, init_lineage, scrape
from tests.integration.cluster import RedisServer

EDIT = {"prompt": "The Eiffel Tower is located in", "target": "Rome"}
KEYS = {"alice-key": {"role": "operator", "name": "alice"}, "bob-key": {"role": "editor", "name": "bob"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_holds_a_minute_and_refills_steadily() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(RateLimitConfig(edits_per_minute=6, queries_per_minute=0), clock=clock)
    assert [limiter.charge("edits", "a") for _ in range(6)] == [0.0] * 6
    assert limiter.charge("edits", "a") == pytest.approx(10.0)  # one unit every 10 s
    assert limiter.charge("edits", "b") == 0.0  # another key has its own bucket
    clock.now += 10.0
    assert limiter.charge("edits", "a") == 0.0 and limiter.charge("edits", "a") > 0
    assert all(limiter.charge("queries", "a") == 0.0 for _ in range(1000))  # 0 = unlimited


def test_a_batch_costs_its_edits_and_an_oversized_one_needs_a_full_bucket() -> None:
    assert gcra(0.0, 100.0, interval=1.0, window=60.0, cost=60) == (160.0, 0.0)
    tat, wait = gcra(160.0, 100.0, interval=1.0, window=60.0, cost=1)
    assert (tat, wait) == (160.0, 1.0)  # refused: the bucket is unchanged
    assert gcra(0.0, 100.0, interval=1.0, window=60.0, cost=100)[1] == 0.0  # full bucket: passes
    assert gcra(101.0, 100.0, interval=1.0, window=60.0, cost=100)[1] == pytest.approx(1.0)


def build(tmp_path: Path, transport: Any, **overrides: Any) -> tuple[TestClient, SqliteEditLog]:
    log = SqliteEditLog(":memory:")
    init_lineage(log)
    settings = Settings(data_dir=tmp_path, _env_file=None, api_keys=KEYS, **overrides)
    return TestClient(create_app(settings, log=log, transport=transport)), log


def test_over_the_limit_is_a_429_problem_with_retry_after(tmp_path: Path) -> None:
    client, log = build(tmp_path, MemoryTransport(), rate_limits={"edits_per_minute": 3})
    batch = {"edits": [EDIT, EDIT]}
    assert client.post("/v1/edits", json=batch, headers=bearer("bob-key")).status_code == 202
    assert client.post("/v1/edits", json=EDIT, headers=bearer("bob-key")).status_code == 202
    refused = client.post("/v1/edits", json=EDIT, headers=bearer("bob-key"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) == 20
    body = refused.json()
    assert (body["code"], body["status"], body["limit"], body["retry_after"]) == ("rate_limited", 429, 3, 20)
    assert "bob" in body["detail"]
    assert log.count_pending() == 3  # the refused edit was never accepted
    rollback = client.post("/v1/rollbacks", json={"to_revision": 0}, headers=bearer("alice-key"))
    assert rollback.status_code == 202  # alice's bucket is her own
    assert client.post("/v1/edits", json=EDIT).status_code == 401  # no key: auth first, no bucket touched
    assert client.post("/v1/edits", json={}, headers=bearer("bob-key")).status_code == 422
    samples = scrape(client)
    assert samples[("factpatch_rate_limited_total", (("kind", "edits"),))] == 1
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield running
    running.kill()


@pytest.mark.redis
def test_api_processes_on_one_redis_share_a_keys_bucket(server: RedisServer, tmp_path: Path) -> None:
    config = QueueConfig(prefix=f"t{new_id('x')[-8:].lower()}")
    limits = {"edits_per_minute": 600, "queries_per_minute": 4}
    apps = [build(tmp_path, RedisTransport.from_url(server.url, config=config), redis_url=server.url,
                  queue=config, rate_limits=limits, query_timeout=0.2) for _ in range(2)]
    assert all(isinstance(c.app.state.rate_limiter, RedisRateLimiter) for c, _ in apps)  # type: ignore[attr-defined]
    statuses = [apps[i % 2][0].post("/v1/generate", json={"prompt": "hi"}, headers=bearer("bob-key")).status_code
                for i in range(5)]
    assert 429 not in statuses[:4] and statuses[4] == 429  # 4 per minute across both processes
    refused = apps[0][0].post("/v1/generate", json={"prompt": "hi"}, headers=bearer("bob-key"))
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 16
    other = apps[1][0].post("/v1/generate", json={"prompt": "hi"}, headers=bearer("alice-key"))
    assert other.status_code != 429
    for client, log in apps:
        client.app.state.transport.close()  # type: ignore[attr-defined]
        log.close()


@pytest.mark.redis
def test_with_redis_away_requests_pass(tmp_path: Path) -> None:
    from store.queue.redis_common import connect

    limiter = RedisRateLimiter(connect("redis://127.0.0.1:1/0"), config=RateLimitConfig(edits_per_minute=1),
                               key=lambda kind, actor: f"x:{kind}:{actor}")
    assert limiter.charge("edits", "a") == 0.0 and limiter.charge("edits", "a") == 0.0
