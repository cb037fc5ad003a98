"""The Redis transport against a real redis-server of the test's own (no model, no worker process)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contract.config import QueueConfig, Settings
from contract.errors import FencedWriterError, JobTimeoutError, QueueFullError, UnavailableError
from contract.protocol import Command, GenerateJob, JobResult, WorkerInfo, new_id, utc_now
from service.main import create_app
from store.log import SqliteEditLog
from store.queue.redis import RedisTransport
from store.queue.redis_keys import Keys
from tests.integration.cluster import RedisServer, wait_until
from workers.lease_keeper import LeaseKeeper

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield running
    running.kill()


@pytest.fixture()
def config() -> QueueConfig:
    return QueueConfig(prefix=f"t{new_id('x')[-8:].lower()}", lease_ms=600, claim_idle_ms=100)


def transport(server: RedisServer, config: QueueConfig, consumer: str = "w1") -> RedisTransport:
    return RedisTransport.from_url(server.url, config=config, consumer=consumer)


def edit(i: int = 0) -> Command:
    return Command(kind="edit", id=f"ed_{i}")


def test_commands_are_redelivered_until_acked_and_own_pending_comes_first(
    server: RedisServer, config: QueueConfig
) -> None:
    api, writer = transport(server, config, "api"), transport(server, config)
    api.commands.put(edit(1))
    api.commands.put(edit(2))
    first = writer.commands.get(timeout=0.5)
    assert first is not None and first.command.id == "ed_1"
    restarted = transport(server, config)  # the same consumer name after a crash
    again = restarted.commands.get(timeout=0.5)
    assert again is not None and again.token == first.token
    restarted.commands.ack(again)
    nxt = restarted.commands.get(timeout=0.5)
    assert nxt is not None and nxt.command.id == "ed_2"
    restarted.commands.ack(nxt)
    assert restarted.commands.depth() == 0 and restarted.commands.get(timeout=0.1) is None


def test_a_dead_writers_entries_are_adopted_after_the_idle_time(server: RedisServer, config: QueueConfig) -> None:
    transport(server, config, "api").commands.put(edit(1))
    dead = transport(server, config, "dead").commands.get(timeout=0.5)
    assert dead is not None
    heir = transport(server, config, "heir")
    time.sleep(0.15)
    adopted = heir.commands.get(timeout=0.5)
    assert adopted is not None and adopted.token == dead.token


def test_an_unreadable_command_is_acked_and_skipped(server: RedisServer, config: QueueConfig) -> None:
    client = server.client()
    client.xadd(Keys(config.prefix).commands, {"data": json.dumps({"schema_version": 99, "kind": "edit", "id": "x"})})
    writer = transport(server, config)
    assert writer.commands.get(timeout=0.2) is None
    assert writer.commands.depth() == 0


def answer_one(worker: RedisTransport, **data: object) -> threading.Thread:
    def run() -> None:
        job = None
        while job is None:
            job = worker.queries.take(timeout=0.5)
        worker.queries.reply(JobResult(id=job.id, ok=True, revision=3, data=dict(data), worker_id="w1"))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_query_round_trip(server: RedisServer, config: QueueConfig) -> None:
    api, worker = transport(server, config, "api"), transport(server, config)
    thread = answer_one(worker, text=" Rome")
    result = api.queries.request(GenerateJob(id=new_id("q"), prompt="p"), timeout=5)
    thread.join(5)
    assert (result.ok, result.revision, result.data, result.worker_id) == (True, 3, {"text": " Rome"}, "w1")
    assert server.client().xlen(Keys(config.prefix).queries) == 0


def test_a_stale_query_is_dropped_not_answered(server: RedisServer, config: QueueConfig) -> None:
    api, worker = transport(server, config, "api"), transport(server, config)
    job = GenerateJob(id=new_id("q"), prompt="p")
    with pytest.raises(JobTimeoutError):
        api.queries.request(job, timeout=0.2)
    assert worker.queries.take(timeout=0.2) is None
    assert not server.client().exists(Keys(config.prefix).reply(job.id))


def test_unknown_schema_versions_become_problems(server: RedisServer, config: QueueConfig) -> None:
    keys, client = Keys(config.prefix), server.client()
    deadline = str(int((time.time() + 10) * 1000))
    client.xadd(keys.queries, {"data": json.dumps({"schema_version": 99, "kind": "poem", "id": "q_1"}),
                               "deadline": deadline})
    worker = transport(server, config)
    assert worker.queries.take(timeout=0.5) is None
    answer = JobResult.model_validate_json(str(client.lpop(keys.reply("q_1"))))
    assert not answer.ok and answer.problem is not None and answer.problem.code == "unsupported_schema"
    api = transport(server, config, "api")
    job = GenerateJob(id=new_id("q"), prompt="p")
    client.lpush(keys.reply(job.id), json.dumps({"schema_version": 99, "id": job.id, "ok": True}))
    result = api.queries.request(job, timeout=2)
    assert not result.ok and result.problem is not None and result.problem.code == "unsupported_schema"


def test_a_full_query_backlog_refuses_and_writes_nothing(server: RedisServer) -> None:
    config = QueueConfig(prefix=f"t{new_id('x')[-8:].lower()}", max_query_backlog=2)
    api, keys = transport(server, config, "api"), Keys(config.prefix)
    for _ in range(2):
        server.client().xadd(keys.queries, {"data": "{}", "deadline": "0"})
    with pytest.raises(QueueFullError):
        api.queries.request(GenerateJob(id=new_id("q"), prompt="p"), timeout=1)
    assert server.client().xlen(keys.queries) == 2


def test_the_api_answers_503_with_retry_after_when_the_query_backlog_is_full(
    server: RedisServer, tmp_path: Path
) -> None:
    config = QueueConfig(prefix=f"t{new_id('x')[-8:].lower()}", max_query_backlog=1)
    api = transport(server, config, "api")
    server.client().xadd(Keys(config.prefix).queries, {"data": "{}", "deadline": "0"})
    app = create_app(Settings(data_dir=tmp_path, _env_file=None), log=SqliteEditLog(":memory:"), transport=api)
    with TestClient(app) as http:
        response = http.post("/v1/generate", json={"prompt": "p"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["code"] == "queue_full"
    assert server.client().xlen(Keys(config.prefix).queries) == 1


def test_events_wake_waiters_without_polling(server: RedisServer, config: QueueConfig) -> None:
    """A waiter with a 10-minute timeout returns as soon as the event comes: it was woken by it (a
    waiter that only looked again at its timeout would still be waiting when the test gives up)."""
    waiter, writer = transport(server, config, "api"), transport(server, config)
    seen = waiter.events.generation()
    waiter.events.wait(seen, 0.05)  # subscribes
    woken: list[int] = []
    thread = threading.Thread(target=lambda: woken.append(waiter.events.wait(seen, 600.0)), daemon=True)
    thread.start()
    timer = threading.Timer(0.3, writer.events.publish)  # by then the waiter is (almost surely) blocked
    timer.start()
    try:
        thread.join(60)
        assert not thread.is_alive(), "the waiter was not woken by the published event within 60 s"
        assert woken == [seen + 1]
    finally:
        timer.cancel()
        waiter.close()  # also releases the waiter if it is still waiting


def test_heartbeats_expire(server: RedisServer, config: QueueConfig) -> None:
    registry = transport(server, config).registry
    info = WorkerInfo(id="w1", role="replica", revision=4, device="cpu", heartbeat_at=utc_now())
    registry.heartbeat(info, ttl=60)  # long enough to be seen, however slow the machine
    assert [w.id for w in registry.workers()] == ["w1"]
    registry.heartbeat(info, ttl=0.3)  # the last heartbeat; nothing renews it
    wait_until(lambda: registry.workers() == [], timeout=30, what="the heartbeat to expire")
    assert not server.client().smembers(Keys(config.prefix).workers)


def test_prefixes_keep_deployments_apart(server: RedisServer, config: QueueConfig) -> None:
    other = QueueConfig(prefix=config.prefix + "b")
    transport(server, config, "api").commands.put(edit(1))
    assert transport(server, other).commands.get(timeout=0.1) is None
    assert transport(server, config).commands.get(timeout=0.5) is not None


def test_the_lease_has_one_holder_and_only_it_renews_or_releases(server: RedisServer, config: QueueConfig) -> None:
    a, b = transport(server, config).lease("a"), transport(server, config).lease("b")
    assert a.try_acquire() and not b.try_acquire()
    assert a.renew() and not b.renew() and not b.release()
    assert a.release() and b.try_acquire() and a.holder() == "b"
    server.client().delete(b.key)  # vanished (e.g. redis restarted without persistence)
    assert b.renew() and b.holder() == "b"


def test_a_lost_lease_fences_the_writer(server: RedisServer, config: QueueConfig) -> None:
    lease = transport(server, config).lease("a")
    lost = threading.Event()
    keeper = LeaseKeeper(lease, renew_every=0.05, on_lost=lost.set)
    assert keeper.acquire()
    stop = threading.Event()
    keeper.start(stop)
    keeper.check()
    server.client().set(lease.key, "b")  # someone else holds it now
    assert lost.wait(30), "the keeper did not notice within 30 s that another holder took the lease"
    with pytest.raises(FencedWriterError):
        keeper.check()
    stop.set()


def test_the_writer_side_survives_a_redis_restart(tmp_path: Path) -> None:
    own = RedisServer(tmp_path / "redis").start()
    try:
        config = QueueConfig(prefix="r")
        api, writer = transport(own, config, "api"), transport(own, config)
        api.commands.put(edit(1))
        delivery = writer.commands.get(timeout=0.5)
        assert delivery is not None
        own.restart()  # no persistence: the stream and its group are gone
        writer.commands.ack(delivery)  # logged, not raised
        assert writer.commands.get(timeout=0.2) is None  # NOGROUP: the group is recreated
        api.commands.put(edit(2))
        again = writer.commands.get(timeout=0.5)
        assert again is not None and again.command.id == "ed_2"
    finally:
        own.kill()


def test_redis_away_is_unavailable_for_the_api_and_quiet_for_workers(tmp_path: Path) -> None:
    own = RedisServer(tmp_path / "redis").start()
    config = QueueConfig(prefix="r")
    api, worker = transport(own, config, "api"), transport(own, config)
    own.kill()
    assert not api.ping()
    assert worker.commands.get(timeout=0.05) is None and worker.queries.take(timeout=0.05) is None
    worker.events.publish()
    worker.registry.heartbeat(WorkerInfo(id="w", role="writer", revision=0, device="cpu", heartbeat_at=utc_now()), 1)
    with pytest.raises(UnavailableError):
        api.commands.put(edit(1))
    with pytest.raises(UnavailableError):
        api.registry.workers()


def test_the_health_command_sees_a_workers_heartbeat(server: RedisServer, config: QueueConfig,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.main import main

    monkeypatch.setenv("FACTPATCH_REDIS_URL", server.url)
    monkeypatch.setenv("FACTPATCH_QUEUE__PREFIX", config.prefix)
    monkeypatch.setenv("FACTPATCH_WORKER_ID", "w9")
    assert main(["health"]) == 1
    info = WorkerInfo(id="w9", role="replica", revision=0, device="cpu", heartbeat_at=utc_now())
    transport(server, config).registry.heartbeat(info, ttl=5)
    assert main(["health"]) == 0


def test_a_streamed_query_arrives_chunk_by_chunk_in_order(server: RedisServer, config: QueueConfig) -> None:
    from contract.protocol import QueryChunk

    api, worker = transport(server, config, "api"), transport(server, config)
    job = GenerateJob(id=new_id("q"), prompt="p", stream=True)
    api.queries.submit(job, timeout=5)
    taken = worker.queries.take_many(8, timeout=1)
    assert [j.id for j in taken] == [job.id] and taken[0].deadline is not None
    for text in ("", " Ro", "me"):
        worker.queries.emit(QueryChunk(id=job.id, text=text, revision=4))
    worker.queries.reply(JobResult(id=job.id, ok=True, revision=4, data={"text": " Rome"}))
    events = [api.queries.next_event(job.id, 2) for _ in range(4)]
    assert [e.text for e in events[:3] if isinstance(e, QueryChunk)] == ["", " Ro", "me"]
    assert isinstance(events[3], JobResult) and events[3].data == {"text": " Rome"}


def test_a_cancelled_query_is_not_taken_and_stops_being_wanted(server: RedisServer, config: QueueConfig) -> None:
    api, worker = transport(server, config, "api"), transport(server, config)
    gone, kept = GenerateJob(id=new_id("q"), prompt="p"), GenerateJob(id=new_id("q"), prompt="p")
    api.queries.submit(gone, timeout=5)
    api.queries.submit(kept, timeout=5)
    api.queries.cancel(gone.id)
    assert [j.id for j in worker.queries.take_many(8, timeout=1)] == [kept.id]
    assert worker.queries.wanted([kept.id, gone.id]) == [True, False]
    with pytest.raises(JobTimeoutError):
        api.queries.next_event(gone.id, 0.5)  # a cancelled wait returns at once, never blocks
