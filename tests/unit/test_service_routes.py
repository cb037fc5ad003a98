"""What the front end guarantees for accepted requests: durability before 202, idempotency, the
queue bound, `?wait=`, and the read routes over the log.

No worker runs here. Where a test needs a request to settle, a few lines play the writer's part
on the log directly (`settle`); where it needs a query answered, a thread replies on the query bus
(`answer_queries`). Both exist only to test the HTTP side of those paths; the end-to-end tests with
a real worker live elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from contract.config import LimitsConfig
from contract.protocol import (
    CommandOutcome,
    CommandRecord,
    GenerateJob,
    JobResult,
    NewRevision,
    Problem,
    QueryJob,
    WorkerInfo,
    utc_now,
)
from tests.helpers import Api, init_lineage

OK = {"prompt": "The Eiffel Tower is located in", "target": "Rome", "subject": "Eiffel Tower"}


@pytest.fixture
def api_defaults() -> dict[str, Any]:
    """A short query timeout: with no worker, an unanswered query is a 504 within a second."""
    return {"query_timeout": 0.3}


def settle(api: Api, outcome: Callable[[str], CommandOutcome], *, revision: bool) -> threading.Thread:
    """Stand-in for the writer: take one command, record its outcome in the log, publish an event."""

    def run() -> None:
        delivery = api.transport.commands.get(timeout=5)
        assert delivery is not None
        out = outcome(delivery.command.id)
        if revision:
            new = NewRevision(kind="edit", base_revision=0, edit_ids=[out.id], checksum="c1", editor="ft",
                              editor_version="1")
            api.log.append_revision(new, [out])
        else:
            api.log.finish([out])
        api.transport.events.publish()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def answer_queries(api: Api, reply: Callable[[QueryJob], JobResult]) -> list[QueryJob]:
    """Stand-in for a worker on the query bus (HTTP mapping only): answers one job with `reply`."""
    seen: list[QueryJob] = []

    def run() -> None:
        job = api.transport.queries.take(timeout=5)
        if job is not None:
            seen.append(job)
            api.transport.queries.reply(reply(job))

    threading.Thread(target=run, daemon=True).start()
    return seen


# ---- POST /v1/edits ------------------------------------------------------------------------


def test_an_edit_is_durable_and_queued_before_202(api: Api) -> None:
    response = api.client.post("/v1/edits", json=OK)
    assert response.status_code == 202
    doc = response.json()
    assert response.headers["location"] == f"/v1/edits/{doc['id']}"
    assert doc["id"].startswith("ed_") and doc["status"] == "queued" and doc["error"] is None
    stored = api.log.get_command(doc["id"])
    assert (stored.kind, stored.status, stored.actor) == ("edit", "queued", "anonymous")
    assert stored.body == {**OK, "rephrases": [], "locality": [], "metadata": {}} == doc["request"]
    delivery = api.transport.commands.get(timeout=0)
    assert delivery is not None and (delivery.command.kind, delivery.command.id) == ("edit", doc["id"])
    assert api.client.get(response.headers["location"]).json() == doc


def test_a_batch_gets_one_id_per_edit_in_order(api: Api) -> None:
    edits = [{**OK, "target": t} for t in ("Rome", "Paris", "Oslo")]
    response = api.client.post("/v1/edits", json={"edits": edits})
    assert response.status_code == 202 and "location" not in response.headers
    items = response.json()["items"]
    assert [i["request"]["target"] for i in items] == ["Rome", "Paris", "Oslo"]
    queued = [api.transport.commands.get(timeout=0) for _ in items]
    assert [d.command.id for d in queued if d] == [i["id"] for i in items]


def test_same_idempotency_key_and_body_returns_the_original(api: Api) -> None:
    headers = {"Idempotency-Key": "ticket-1"}
    first = api.client.post("/v1/edits", json=OK, headers=headers)
    again = api.client.post("/v1/edits", json=OK, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert api.transport.commands.depth() == 1
    assert api.log.count_commands(kind="edit") == 1


def test_same_idempotency_key_with_another_body_is_a_409(api: Api) -> None:
    headers = {"Idempotency-Key": "ticket-1"}
    api.client.post("/v1/edits", json=OK, headers=headers)
    response = api.client.post("/v1/edits", json={**OK, "target": "Paris"}, headers=headers)
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert api.log.count_commands(kind="edit") == 1 and api.transport.commands.depth() == 1


def test_a_full_queue_is_a_503_and_writes_nothing(make_api: Callable[..., Api]) -> None:
    api = make_api(limits=LimitsConfig(max_queue=2))
    assert api.client.post("/v1/edits", json={"edits": [OK, OK]}).status_code == 202
    for body in (OK, {"edits": [OK]}):
        response = api.client.post("/v1/edits", json=body)
        assert response.status_code == 503
        assert response.json()["code"] == "queue_full"
        assert int(response.headers["retry-after"]) >= 1
    assert api.log.count_commands(kind="edit") == 2 and api.transport.commands.depth() == 2


# ---- ?wait= --------------------------------------------------------------------------------


def test_wait_times_out_with_202_without_busy_polling(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    original = api.log.get_commands

    def counting(ids: Sequence[str]) -> list[CommandRecord]:
        reads.append(len(ids))
        return original(ids)

    waits: list[float] = []
    wait_for_event = api.transport.events.wait

    def timed(seen: int, timeout: float) -> int:
        waits.append(timeout)
        return wait_for_event(seen, timeout)

    monkeypatch.setattr(api.log, "get_commands", counting)
    monkeypatch.setattr(api.transport.events, "wait", timed)
    started = time.monotonic()
    response = api.client.post("/v1/edits?wait=0.5", json=OK)
    elapsed = time.monotonic() - started
    assert response.status_code == 202 and response.json()["status"] == "queued"
    assert elapsed >= 0.45  # it did wait (a lower bound: a busy machine only makes it longer)
    # ... and no longer than asked: the waits on change events add up to the 0.5 s at most (counted in
    # the timeouts the server asked for, not in wall time, which a loaded machine stretches).
    assert waits and sum(waits) <= 0.5 + 1e-6, waits
    assert len(reads) <= 3  # woken by events or the deadline, not a polling loop


def test_wait_returns_200_once_the_edit_is_applied(api: Api) -> None:
    init_lineage(api.log)
    report = {"target_logprob_after": -0.2}
    writer = settle(api, lambda i: CommandOutcome(id=i, status="applied", report=report), revision=True)
    response = api.client.post("/v1/edits?wait=5", json=OK)
    writer.join(timeout=5)
    assert response.status_code == 200
    doc = response.json()
    assert (doc["status"], doc["revision"], doc["report"]) == ("applied", 1, {"target_logprob_after": -0.2})
    assert doc["applied_at"] is not None


def test_a_rejected_edit_carries_its_problem(api: Api) -> None:
    problem = Problem(type="/problems/guard-failed", title="Edit rejected by the guard", status=422,
                      detail="locality moved", code="guard_failed")
    writer = settle(api, lambda i: CommandOutcome(id=i, status="rejected", error=problem), revision=False)
    response = api.client.post("/v1/edits?wait=5", json=OK)
    writer.join(timeout=5)
    assert response.status_code == 200
    assert response.json()["error"] == problem.model_dump(exclude_none=True)


# ---- GET /v1/edits -------------------------------------------------------------------------


def test_list_edits_is_newest_first_with_a_cursor(api: Api) -> None:
    ids = [api.client.post("/v1/edits", json={**OK, "target": str(n)}).json()["id"] for n in range(3)]
    first = api.client.get("/v1/edits?limit=2").json()
    assert [i["id"] for i in first["items"]] == ids[:0:-1] and first["next_cursor"] is not None
    rest = api.client.get(f"/v1/edits?limit=2&cursor={first['next_cursor']}").json()
    assert [i["id"] for i in rest["items"]] == ids[:1] and rest["next_cursor"] is None
    assert api.client.get("/v1/edits?status=applied").json() == {"items": [], "next_cursor": None}
    assert len(api.client.get("/v1/edits?status=queued").json()["items"]) == 3


# ---- rollbacks and replay ------------------------------------------------------------------


def test_rollback_to_a_revision_is_accepted(api: Api) -> None:
    init_lineage(api.log)
    response = api.client.post("/v1/rollbacks", json={"to_revision": 0})
    assert response.status_code == 202
    doc = response.json()
    assert response.headers["location"] == f"/v1/rollbacks/{doc['id']}" and doc["id"].startswith("rb_")
    assert (doc["status"], doc["request"]) == ("queued", {"to_revision": 0})
    delivery = api.transport.commands.get(timeout=0)
    assert delivery is not None and delivery.command.kind == "rollback"
    assert api.client.get(f"/v1/rollbacks/{doc['id']}").json() == doc
    assert api.client.get(f"/v1/edits/{doc['id']}").status_code == 404


def test_rollback_of_edits_is_idempotent(api: Api) -> None:
    init_lineage(api.log)
    edit_id = api.client.post("/v1/edits", json=OK).json()["id"]
    headers, body = {"Idempotency-Key": "undo-1"}, {"edit_ids": [edit_id]}
    first = api.client.post("/v1/rollbacks", json=body, headers=headers)
    again = api.client.post("/v1/rollbacks", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"] and first.json()["request"] == body


def test_replay_accepts_an_empty_body_and_reports_its_result(api: Api) -> None:
    response = api.client.post("/v1/replay")
    assert response.status_code == 202
    doc = response.json()
    assert response.headers["location"] == f"/v1/replay/{doc['id']}" and doc["result"] is None
    result = {"checked": 3, "mismatches": []}
    api.log.finish([CommandOutcome(id=doc["id"], status="applied", report=result)])
    assert api.client.get(f"/v1/replay/{doc['id']}").json()["result"] == result


# ---- state ---------------------------------------------------------------------------------


def test_model_is_503_until_a_worker_started_the_log(api: Api) -> None:
    response = api.client.get("/v1/model")
    assert response.status_code == 503 and response.json()["code"] == "worker_unavailable"
    assert "retry-after" in response.headers


def test_model_describes_head_and_workers(api: Api) -> None:
    init_lineage(api.log, base_model="tiny-llama")
    worker = WorkerInfo(id="w1", role="writer", revision=0, device="cpu", heartbeat_at=utc_now())
    api.transport.registry.heartbeat(worker, ttl=5)
    body = api.client.get("/v1/model").json()
    listed = worker.model_dump(exclude={"checksum", "model", "editor", "metrics"})
    assert body == {"base_model": "tiny-llama", "editor": "ft", "revision": 0, "checksum": "c0",
                    "edits_applied": 0, "workers": [listed]}


def test_revisions_are_newest_first(api: Api) -> None:
    init_lineage(api.log)
    for n in (1, 2):
        api.log.append_revision(NewRevision(kind="edit", base_revision=n - 1, checksum=f"c{n}", editor="ft",
                                            editor_version="1", actor="key:abc"), [])
    page = api.client.get("/v1/revisions?limit=2").json()
    assert [r["revision"] for r in page["items"]] == [2, 1] and page["next_cursor"] == "1"
    rest = api.client.get("/v1/revisions?cursor=1").json()
    assert [r["revision"] for r in rest["items"]] == [0] and rest["next_cursor"] is None
    base = api.client.get("/v1/revisions/0").json()
    assert set(base) == {"revision", "kind", "edit_ids", "removed_ids", "base_revision", "artifacts",
                         "checksum", "created_at", "actor"}
    assert (base["kind"], base["checksum"]) == ("base", "c0")


# ---- queries (HTTP mapping only; see the module docstring) ---------------------------------


def test_generate_passes_the_job_and_names_the_revision(api: Api) -> None:
    seen = answer_queries(api, lambda job: JobResult(id=job.id, ok=True, revision=7,
                                                     data={"text": " Rome", "model": "tiny"}))
    response = api.client.post("/v1/generate", json={"prompt": "The Eiffel Tower is in", "min_revision": 7})
    assert response.status_code == 200
    assert response.json() == {"text": " Rome", "revision": 7, "model": "tiny", "finish_reason": None}
    assert response.headers["x-model-revision"] == "7"
    job = seen[0]
    assert isinstance(job, GenerateJob)
    assert (job.max_new_tokens, job.temperature, job.top_p, job.seed, job.min_revision) == (16, 0, 1, None, 7)


def test_score_returns_the_workers_scores(api: Api) -> None:
    scores = [{"candidate": "Ottawa", "logprob": -0.4, "tokens": 2}]
    answer_queries(api, lambda job: JobResult(id=job.id, ok=True, revision=3, data={"scores": scores}))
    body = {"prompt": "The capital of Canada is", "candidates": ["Ottawa"]}
    response = api.client.post("/v1/score", json=body)
    assert response.status_code == 200
    assert response.json() == {"scores": scores, "revision": 3}
    assert response.headers["x-model-revision"] == "3"


@pytest.mark.parametrize(("status", "code"), [(503, "revision_not_reached"), (422, "prompt_too_long")])
def test_a_workers_problem_keeps_its_status(api: Api, status: int, code: str) -> None:
    problem = Problem(type=f"/problems/{code.replace('_', '-')}", title="no", status=status, detail="why",
                      code=code, retry_after=2)
    answer_queries(api, lambda job: JobResult(id=job.id, ok=False, problem=problem))
    response = api.client.post("/v1/generate", json={"prompt": "p"})
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.json()["code"], response.json()["detail"]) == (code, "why")
    assert (response.headers.get("retry-after") == "2") is (status == 503)


def test_no_answer_in_time_is_a_504(api: Api) -> None:
    response = api.client.post("/v1/generate", json={"prompt": "p"})
    assert response.status_code == 504 and response.json()["code"] == "job_timeout"
