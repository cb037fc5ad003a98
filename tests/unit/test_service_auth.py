"""Keys made with `factpatch keys`, as the API sees them: roles, names as actors, revocation,
the loopback rule without keys, and the actor on JSON log lines."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cli.main import main
from contract.config import Settings
from service.auth import KeyRing, listen_host
from service.main import create_app
from store.log import SqliteEditLog, open_log
from store.queue import MemoryTransport
from tests.helpers import bearer, init_lineage

EDIT = {"prompt": "The Eiffel Tower is located in", "target": "Rome"}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACTPATCH_DATA_DIR", str(tmp_path))
    return tmp_path


def create_key(name: str, role: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["keys", "create", "--name", name, "--role", role]) == 0
    out, err = capsys.readouterr()
    assert f"created key {name!r} ({role}" in err
    return out.strip()


@pytest.fixture
def app_on(data_dir: Path) -> Iterator[Any]:
    """An API over the SQLite log in the data dir (where `factpatch keys` wrote), keys re-read at once."""
    logs: list[Any] = []

    def make(**overrides: Any) -> TestClient:
        settings = Settings(data_dir=data_dir, _env_file=None, key_cache_seconds=0, **overrides)
        log = open_log(settings)
        logs.append(log)
        if log.lineage() is None:
            init_lineage(log)
        return TestClient(create_app(settings, log=log, transport=MemoryTransport()))

    yield make
    for log in logs:
        log.close()


def test_keys_made_by_the_cli_carry_their_role_and_name(app_on: Any, capsys: pytest.CaptureFixture[str]) -> None:
    reader, editor, operator = (create_key(n, r, capsys) for n, r in
                                (("rita", "reader"), ("eddie", "editor"), ("olga", "operator")))
    client = app_on()
    assert client.post("/v1/edits", json=EDIT, headers=bearer(reader)).status_code == 403
    edit = client.post("/v1/edits", json=EDIT, headers=bearer(editor))
    assert edit.status_code == 202 and edit.json()["actor"] == "eddie"
    assert client.post("/v1/rollbacks", json={"to_revision": 0}, headers=bearer(editor)).status_code == 403
    rollback = client.post("/v1/rollbacks", json={"to_revision": 0}, headers=bearer(operator))
    assert rollback.status_code == 202 and rollback.json()["actor"] == "olga"
    replay = client.post("/v1/replay", headers=bearer(operator))
    assert replay.status_code == 202 and replay.json()["actor"] == "olga"
    listed = client.get("/v1/edits", headers=bearer(reader)).json()["items"]
    assert [e["actor"] for e in listed] == ["eddie"]
    assert client.get("/v1/edits").status_code == 401


def test_list_shows_no_secret_and_revoke_stops_the_key(app_on: Any, capsys: pytest.CaptureFixture[str]) -> None:
    secret = create_key("temp", "editor", capsys)
    client = app_on()
    assert client.get("/v1/edits", headers=bearer(secret)).status_code == 200
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out
    assert "temp" in listing and "editor" in listing and "active" in listing
    assert secret not in listing and secret[8:] not in listing
    assert main(["keys", "revoke", "temp"]) == 0
    assert "revoked key 'temp'" in capsys.readouterr().out
    response = client.get("/v1/edits", headers=bearer(secret))
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"
    assert client.get("/v1/edits").status_code == 401  # every key revoked: auth stays on


def test_the_cli_refuses_a_taken_name_and_lists_json(app_on: Any, capsys: pytest.CaptureFixture[str]) -> None:
    create_key("dup", "reader", capsys)
    assert main(["keys", "create", "--name", "dup", "--role", "operator"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["keys", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["name"], k["role"]) for k in listed] == [("dup", "reader")] and "digest" not in listed[0]


def test_an_environment_key_can_carry_a_name(app_on: Any) -> None:
    client = app_on(api_keys={"ci-secret": {"role": "editor", "name": "ci"}, "plain": "reader"})
    assert client.post("/v1/edits", json=EDIT, headers=bearer("ci-secret")).json()["actor"] == "ci"
    assert client.post("/v1/edits", json=EDIT, headers=bearer("plain")).status_code == 403


def test_without_keys_requests_are_anonymous(app_on: Any) -> None:
    assert app_on().post("/v1/edits", json=EDIT).json()["actor"] == "anonymous"


def test_without_keys_the_service_listens_on_loopback_only() -> None:
    log = SqliteEditLog(":memory:")
    empty = KeyRing({}, log)
    assert listen_host("0.0.0.0", empty)[0] == "127.0.0.1"
    assert "127.0.0.1 only" in listen_host("0.0.0.0", empty)[1]
    assert listen_host("::1", empty)[0] == "::1"
    assert listen_host("localhost", empty)[0] == "localhost"
    assert listen_host("0.0.0.0", KeyRing({"k": "reader"}, log))[0] == "0.0.0.0"
    log.create_key(name="first", role="reader", secret="fpk_x")
    assert listen_host("0.0.0.0", KeyRing({}, log))[0] == "0.0.0.0"
    log.close()


def test_json_log_lines_carry_request_id_and_actor(app_on: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from contract import logcontext

    secret = create_key("olga", "operator", capsys)
    client = app_on()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(logcontext.ContextFilter())
    logging.getLogger("service").addHandler(handler)
    try:
        client.post("/v1/rollbacks", json={"to_revision": 0}, headers={**bearer(secret), "X-Request-Id": "rq-1"})
    finally:
        logging.getLogger("service").removeHandler(handler)
    line = json.loads(logcontext.JsonFormatter().format(next(r for r in records if "rollback" in r.getMessage())))
    assert (line["request_id"], line["actor"], line["level"]) == ("rq-1", "olga", "WARNING")
    assert line["time"].endswith("Z") and "rollback rb_" in line["message"]
