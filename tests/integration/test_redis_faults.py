"""Fault tests of the Redis deployment: real redis-server, real worker processes, SIGKILL.

Invariant 1 and 2 under crashes: every edit answered 202 is applied exactly once (one revision
entry per edit id), in acceptance order, and replay reproduces every checksum; a standby takes
the writer lease once its TTL has run out; a replica started late catches up and answers like the writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from contract.config import Settings
from contract.protocol import GenerateJob, new_id
from store.log import EditLog, open_log
from store.queue.redis import RedisTransport
from store.queue.redis_keys import Keys
from tests.integration.cluster import Cluster, cluster, postgres_schema_url, submit_edit, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def edit_body(i: int) -> dict[str, str]:
    return {"prompt": f"Fact number {i} is about", "target": f" item {i % 7}"}


def open_cluster_log(run: Cluster) -> EditLog:
    settings = Settings(data_dir=run.folder / "data", database_url=run.database_url, _env_file=None)
    return open_log(settings)


def wait_resolved(log: EditLog, run: Cluster, timeout: float = 180) -> None:
    wait_until(lambda: log.count_pending() == 0, timeout=timeout, what="every accepted edit to resolve",
               every=0.5, explain=run.explain)


def assert_applied_once_in_order(log: EditLog, accepted: list[str]) -> None:
    """One revision entry per edit id, revisions in acceptance (seq) order, a linear history."""
    records = log.get_commands(accepted)
    assert [r.status for r in records] == ["applied"] * len(accepted)
    assert [r.id for r in sorted(records, key=lambda r: r.seq)] == accepted
    head = log.head().revision
    revisions = [r for r in log.revisions_between(1, head) if r.kind == "edit"]
    applied_in_order = [edit_id for r in revisions for edit_id in r.edit_ids]
    assert applied_in_order == accepted, "every edit once, in acceptance order"
    assert all(r.base_revision == r.revision - 1 for r in revisions), "no revision skipped over another"
    where = {edit_id: r.revision for r in revisions for edit_id in r.edit_ids}
    assert all(r.revision == where[r.id] for r in records)


def replay_verifies(client: httpx.Client) -> None:
    replay = client.post("/v1/replay?wait=60", timeout=90)
    assert replay.status_code == 200, replay.text
    doc = replay.json()
    assert doc["status"] == "applied" and doc["result"]["mismatches"] == [], doc


def test_edits_survive_writer_kills_and_a_redis_restart(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, postgres_schema: str
) -> None:
    database = postgres_schema_url(postgres_url, postgres_schema)
    with cluster(tmp_path, tiny_model_dir, database_url=database, FACTPATCH_QUEUE__LEASE_MS="4000",
                 FACTPATCH_QUEUE__CLAIM_IDLE_MS="3000") as run:
        run.start_api()
        log = open_cluster_log(run)
        writers = [run.start_worker("writer-a")]
        accepted: list[str] = []
        with httpx.Client(base_url=run.api_url, timeout=10) as client:

            def stream(n: int) -> None:
                for _ in range(n):
                    i = len(accepted)
                    accepted.append(submit_edit(client, edit_body(i), key=f"edit-{i}")[0])

            def writer_started(epoch: int) -> None:
                """The n-th writer holds the lease and has taken its fencing epoch."""
                wait_until(lambda: log.current_epoch() >= epoch, timeout=120, what=f"writer epoch {epoch}",
                           every=0.2, explain=run.explain)

            def crash_writer(next_id: str) -> None:
                """SIGKILL right after a burst of edits, so the writer dies in the middle of them."""
                writers[-1].kill()
                writers.append(run.start_worker(next_id))

            writer_started(1)
            stream(30)
            crash_writer("writer-a")  # same consumer name: drains its own pending entries first
            stream(30)  # accepted while no writer runs
            writer_started(2)
            stream(30)
            wait_resolved(log, run)
            run.redis.restart()  # no persistence: stream, group, lease and heartbeats are gone
            stream(30)
            wait_resolved(log, run)
            assert writers[-1].alive and log.current_epoch() == 2, "the writer rode out the redis restart"
            stream(20)
            crash_writer("writer-b")  # a new consumer: the old one's entries are adopted (XAUTOCLAIM)
            stream(10)
            writer_started(3)
            stream(20)
            crash_writer("writer-c")
            stream(10)
            writer_started(4)
            stream(20)
            assert len(accepted) == len(set(accepted)) == 200
            wait_resolved(log, run)
            assert_applied_once_in_order(log, accepted)
            replay_verifies(client)
        log.close()


def test_api_restart_loses_nothing_accepted(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SQLite log shared by processes on one host (WAL); the API process is SIGKILLed mid-stream."""
    with cluster(tmp_path, tiny_model_dir) as run:
        api = run.start_api()
        run.start_worker("writer-a")
        run.wait_worker("writer-a", role="writer")
        accepted: list[str] = []
        with httpx.Client(base_url=run.api_url, timeout=10) as client:
            for i in range(60):
                if i == 25:
                    api.kill()
                    api = run.start_api()
                accepted.append(submit_edit(client, edit_body(i), key=f"edit-{i}")[0])
            log = open_cluster_log(run)
            wait_resolved(log, run)
            assert_applied_once_in_order(log, accepted)
            log.close()


def test_standby_takes_the_lease_within_its_ttl(tmp_path: Path, tiny_model_dir: Path, postgres_url: str,
                                                postgres_schema: str) -> None:
    """Writer and standby share no files (each its own data dir): everything is in Postgres."""
    database = postgres_schema_url(postgres_url, postgres_schema)
    ttl = 2.0
    lease_ms = str(int(ttl * 1000))
    with cluster(tmp_path, tiny_model_dir, database_url=database, FACTPATCH_QUEUE__LEASE_MS=lease_ms) as run:
        run.start_api()
        writer = run.start_worker("writer-a", data_dir="host-a")
        run.wait_worker("writer-a", role="writer")
        run.start_worker("writer-b", data_dir="host-b")
        run.wait_worker("writer-b", role="standby", revision=0)
        with httpx.Client(base_url=run.api_url, timeout=60) as client:
            first = client.post("/v1/edits?wait=30", json=edit_body(0)).json()
            assert (first["status"], first["revision"]) == ("applied", 1)
            lease = run.redis.client()
            key = Keys(run.prefix).writer_lease
            assert lease.get(key) == "writer-a"
            writer.kill()
            # The lease expires `ttl` after the dead writer's last renewal, then the standby takes it.
            # The deadline is generous: on a loaded machine the standby process may get the CPU late.
            wait_until(lambda: lease.get(key) == "writer-b", timeout=ttl + 30,
                       what=f"the standby to hold the lease (TTL {ttl:g} s)", every=0.05, explain=run.explain)
            second = client.post("/v1/edits?wait=30", json=edit_body(1)).json()
            assert (second["status"], second["revision"]) == ("applied", 2), second
            run.wait_worker("writer-b", role="writer", revision=2)
            assert client.get("/readyz").json()["writer"] == "writer-b"
            replay_verifies(client)


def query_each_worker(transport: RedisTransport, prompt: str, *, revision: int, workers: set[str]) -> dict[str, str]:
    """Greedy answers at `revision` from every worker named, asking until each has answered."""
    answers: dict[str, str] = {}
    for _ in range(60):
        job = GenerateJob(id=new_id("q"), prompt=prompt, max_new_tokens=6, min_revision=revision)
        result = transport.queries.request(job, timeout=20)
        assert result.ok and result.revision == revision, result
        answers[str(result.worker_id)] = str(result.data["text"])
        if set(answers) >= workers:
            return answers
    raise AssertionError(f"only {sorted(answers)} answered")


def test_a_late_replica_catches_up_and_answers_like_the_writer(
    tmp_path: Path, tiny_model_dir: Path, postgres_url: str, postgres_schema: str
) -> None:
    database = postgres_schema_url(postgres_url, postgres_schema)
    prompts = [edit_body(i)["prompt"] for i in range(3)] + ["The weather today is"]
    with cluster(tmp_path, tiny_model_dir, database_url=database) as run:
        run.start_api()
        run.start_worker("writer-a", data_dir="host-a")
        run.wait_worker("writer-a", role="writer")
        with httpx.Client(base_url=run.api_url, timeout=60) as client:
            for i in range(4):
                assert client.post("/v1/edits?wait=30", json=edit_body(i)).json()["status"] == "applied"
            rollback = client.post("/v1/rollbacks?wait=30", json={"to_revision": 2}).json()
            assert rollback["status"] == "applied", rollback
            for i in range(4, 6):
                assert client.post("/v1/edits?wait=30", json=edit_body(i)).json()["status"] == "applied"
            head = client.get("/v1/model").json()["revision"]
            run.start_worker("replica-1", role="replica", data_dir="host-r")
            run.wait_worker("replica-1", role="replica", revision=head)
            beat = json.loads(run.redis.client().get(Keys(run.prefix).worker("replica-1")) or "{}")
            assert beat["checksum"] == client.get("/v1/model").json()["checksum"]
            transport = RedisTransport.from_url(run.redis.url, prefix=run.prefix)
            try:
                for prompt in prompts:
                    answers = query_each_worker(transport, prompt, revision=head, workers={"writer-a", "replica-1"})
                    assert answers["writer-a"] == answers["replica-1"], (prompt, answers)
                live = client.post("/v1/edits?wait=30", json=edit_body(9)).json()  # followed, not re-run
                run.wait_worker("replica-1", role="replica", revision=live["revision"])
                for prompt in prompts[:2]:
                    answers = query_each_worker(transport, prompt, revision=live["revision"],
                                                workers={"writer-a", "replica-1"})
                    assert answers["writer-a"] == answers["replica-1"], (prompt, answers)
            finally:
                transport.close()
