"""Cross-cutting behaviour of the front end: auth, request ids, problems, readiness and metrics."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from contract import errors
from contract.config import Settings
from contract.protocol import CommandRecord, WorkerInfo, utc_now
from service.main import create_app
from service.problems import PROBLEMS, resolve
from store.log import SqliteEditLog
from store.queue import MemoryTransport
from tests.helpers import Api, bearer, init_lineage, scrape

OK = {"prompt": "The Eiffel Tower is located in", "target": "Rome"}
KEYS = {"read-key": "reader", "edit-key": "editor", "op-key": "operator"}


@pytest.fixture
def api_defaults() -> dict[str, Any]:
    """Unhandled errors reach the client as the 500 a caller would see, not as exceptions."""
    return {"raise_server_exceptions": False}


# ---- auth ----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, bearer("wrong-key"), {"Authorization": "Basic cmVhZDprZXk="}],
                         ids=["missing", "unknown", "not bearer"])
def test_missing_or_unknown_key_is_a_401(make_api: Callable[..., Api], headers: dict[str, str]) -> None:
    api = make_api(api_keys=KEYS)
    response = api.client.get("/v1/edits", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["code"] == "unauthenticated"
    assert "wrong-key" not in response.text


ROLE_CASES = [
    ("GET", "/v1/edits", None, {"read-key": 200, "edit-key": 200, "op-key": 200}),
    ("POST", "/v1/edits", OK, {"read-key": 403, "edit-key": 202, "op-key": 202}),
    ("POST", "/v1/rollbacks", {"to_revision": 0}, {"read-key": 403, "edit-key": 403, "op-key": 202}),
    ("POST", "/v1/replay", None, {"read-key": 403, "edit-key": 403, "op-key": 202}),
]


@pytest.mark.parametrize("method,path,body,expected", ROLE_CASES, ids=[c[0] + c[1] for c in ROLE_CASES])
def test_each_route_needs_its_role(
    make_api: Callable[..., Api], method: str, path: str, body: Any, expected: dict[str, int]
) -> None:
    api = make_api(api_keys=KEYS)
    init_lineage(api.log)
    for key, status in expected.items():
        response = api.client.request(method, path, json=body, headers=bearer(key))
        assert response.status_code == status, (key, response.text)
        if status == 403:
            assert response.json()["code"] == "forbidden"


def test_an_unnamed_environment_key_is_named_by_its_digest_prefix(make_api: Callable[..., Api]) -> None:
    api = make_api(api_keys=KEYS)
    edit_id = api.client.post("/v1/edits", json=OK, headers=bearer("edit-key")).json()["id"]
    assert api.log.get_command(edit_id).actor == "env-" + hashlib.sha256(b"edit-key").hexdigest()[:8]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
def test_operations_routes_are_open(make_api: Callable[..., Api], path: str) -> None:
    api = make_api(api_keys=KEYS)
    assert api.client.get(path).status_code in (200, 503)


# ---- request ids ---------------------------------------------------------------------------


def test_a_valid_request_id_is_echoed(api: Api) -> None:
    response = api.client.get("/healthz", headers={"X-Request-Id": "client-1.2:3_x"})
    assert response.headers["x-request-id"] == "client-1.2:3_x"


@pytest.mark.parametrize("given", ["", "x" * 129, "bad id", "semi;colon"])
def test_an_unacceptable_request_id_is_replaced(api: Api, given: str) -> None:
    response = api.client.get("/healthz", headers={"X-Request-Id": given})
    assert re.fullmatch(r"req_[0-9A-Z]{26}", response.headers["x-request-id"])


def test_every_answer_has_a_fresh_request_id_also_problems(api: Api) -> None:
    answers = [api.client.get("/healthz"), api.client.get("/nowhere"), api.client.delete("/v1/edits"),
               api.client.post("/v1/edits", json={})]
    assert [r.status_code for r in answers] == [200, 404, 405, 422]
    ids = [r.headers["x-request-id"] for r in answers]
    assert len(set(ids)) == 4
    for response in answers[1:]:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["request_id"] == response.headers["x-request-id"]


# ---- problems ------------------------------------------------------------------------------


class ExplodingLog(SqliteEditLog):
    def get_command(self, command_id: str) -> CommandRecord:
        raise RuntimeError("password=hunter2 in the connection string")

    def get_commands(self, command_ids: Sequence[str]) -> list[CommandRecord]:
        raise RuntimeError("password=hunter2 in the connection string")


def test_a_500_leaks_nothing_and_is_logged_with_the_request_id(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    api = make_api(log=ExplodingLog(":memory:"))
    with caplog.at_level(logging.ERROR):
        response = api.client.get("/v1/edits/ed_x", headers={"X-Request-Id": "trace-500"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "trace-500"
    body = response.json()
    assert (body["code"], body["request_id"]) == ("internal_error", "trace-500")
    assert body["instance"] == "/v1/edits/ed_x"
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "trace-500"]
    assert logged and logged[0].exc_info is not None


def test_the_table_covers_every_editing_error() -> None:
    def subclasses(cls: type[Exception]) -> list[type[Exception]]:
        return [cls] + [s for sub in cls.__subclasses__() for s in subclasses(sub)]

    ours = [c for c in subclasses(errors.EditingError) if c.__module__ == errors.__name__]
    assert set(ours) <= set(PROBLEMS), set(ours) - set(PROBLEMS)


def test_the_most_specific_class_wins() -> None:
    class SlowQueueError(errors.QueueFullError):
        pass

    assert resolve(SlowQueueError("x")) == PROBLEMS[errors.QueueFullError]
    assert resolve(errors.EditNotFoundError("x"))[0] == 404
    assert resolve(ValueError("x"))[0] == 500


# ---- readiness and metrics -----------------------------------------------------------------


def writer_heartbeat(api: Api, role: Literal["writer", "replica", "standby"] = "writer") -> None:
    info = WorkerInfo(id=f"{role}-1", role=role, revision=0, device="cpu", heartbeat_at=utc_now())
    api.transport.registry.heartbeat(info, ttl=5)


def test_healthz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}


def test_readyz_needs_a_writer_heartbeat(api: Api) -> None:
    init_lineage(api.log)
    for role in (None, "replica"):
        if role == "replica":
            writer_heartbeat(api, role)
        response = api.client.get("/readyz")
        assert response.status_code == 503 and response.json()["code"] == "worker_unavailable"
        assert int(response.headers["retry-after"]) >= 1
    writer_heartbeat(api)
    response = api.client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "writer": "writer-1"})


def test_metrics_are_prometheus_text(api: Api) -> None:
    init_lineage(api.log)
    writer_heartbeat(api)
    api.client.post("/v1/edits", json=OK)
    api.client.get("/v1/edits/ed_one")
    api.client.get("/v1/edits/ed_two")
    samples = scrape(api.client)
    route = (("method", "GET"), ("route", "/v1/edits/{edit_id}"))
    assert samples[("factpatch_http_requests_total", (*route, ("status", "404")))] == 2
    assert samples[("factpatch_http_requests_total", (("method", "POST"), ("route", "/v1/edits"),
                                                      ("status", "202")))] == 1
    assert samples[("factpatch_http_request_duration_seconds_bucket", (("le", "+Inf"), *route))] == 2
    assert samples[("factpatch_queue_depth", ())] == 1
    assert samples[("factpatch_revision", ())] == 0
    assert samples[("factpatch_edits", (("status", "queued"),))] == 1
    assert samples[("factpatch_workers", (("role", "writer"),))] == 1


def test_metrics_include_each_workers_own_figures_labelled_by_worker(api: Api) -> None:
    from workers.metrics import WorkerMetrics

    init_lineage(api.log)
    for worker_id, role, revision in (("writer-1", "writer", 3), ("replica-1", "replica", 2)):
        own = WorkerMetrics()
        own.serving(role=role, revision=revision)
        own.query("generate", 0.2)
        own.batch(4)
        info = WorkerInfo(id=worker_id, role=role, revision=revision, device="cpu", heartbeat_at=utc_now(),
                          metrics=own.render())
        api.transport.registry.heartbeat(info, ttl=5)
    samples = scrape(api.client)
    assert samples[("factpatch_worker_revision", (("role", "writer"), ("worker", "writer-1")))] == 3
    assert samples[("factpatch_worker_revision", (("role", "replica"), ("worker", "replica-1")))] == 2
    assert samples[("factpatch_query_batch_size_count", (("worker", "replica-1"),))] == 1
    assert samples[("factpatch_query_duration_seconds_sum", (("kind", "generate"), ("worker", "writer-1")))] == 0.2


def test_openapi_documents_the_hand_parsed_bodies(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    body = spec["paths"]["/v1/edits"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {s["title"] for s in body["anyOf"]} == {"EditCreate", "EditBatchCreate"}
    assert "/v1/rollbacks" in spec["paths"] and "/readyz" in spec["paths"]


# ---- app lifecycle -------------------------------------------------------------------------


class SpyLog(SqliteEditLog):
    closed = False

    def close(self) -> None:
        self.closed = True
        super().close()


def test_the_app_closes_the_log_it_opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = SpyLog(":memory:")
    monkeypatch.setattr("service.main.open_log", lambda settings: spy)
    app = create_app(Settings(data_dir=tmp_path, _env_file=None), transport=MemoryTransport())
    with TestClient(app) as client:
        assert client.post("/v1/edits", json=OK).status_code == 202
        assert not spy.closed
    assert spy.closed


def test_the_app_leaves_a_log_it_was_given_open(api: Api) -> None:
    with api.client:
        pass
    assert api.log.count_pending() == 0


def test_a_failed_enqueue_still_answers_202_because_the_log_holds_it(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(command: object) -> None:
        raise ConnectionError("queue down")

    monkeypatch.setattr(api.transport.commands, "put", broken)
    response = api.client.post("/v1/edits", json=OK)
    assert response.status_code == 202
    assert [r.id for r in api.log.pending_commands()] == [response.json()["id"]]
