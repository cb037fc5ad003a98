"""Fixtures of the unit tests: the API on an in-memory log and transport, and edit logs on each backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from store.log import SqliteEditLog
from store.log.sql import SqlEditLog
from tests.helpers import Api, LogOpener

# ---- the API (no worker) ------------------------------------------------------------------------


@pytest.fixture
def api_defaults() -> dict[str, Any]:
    """What every app `make_api` builds in a module starts from: `make_api` arguments. A module that
    wants other defaults overrides this fixture."""
    return {}


@pytest.fixture
def make_api(tmp_path: Path, api_defaults: dict[str, Any]) -> Iterator[Callable[..., Api]]:
    """`make(log=None, *, raise_server_exceptions=True, lifespan=False, **settings)`: the API app on
    `log` (default: a new in-memory SQLite log) and a new in-memory transport, in a test client.

    `raise_server_exceptions=False` turns an unhandled error into the 500 a client would see;
    `lifespan=True` runs the app's startup and shutdown (the client is entered as a context).
    Every other keyword is a Settings field (data_dir is the test's tmp_path, no .env file).
    Clients and logs are closed at teardown."""
    from fastapi.testclient import TestClient

    from contract.config import Settings
    from service.main import create_app
    from store.queue import MemoryTransport

    logs: list[SqliteEditLog] = []
    clients = ExitStack()

    def make(log: SqliteEditLog | None = None, **overrides: Any) -> Api:
        options = {**api_defaults, **overrides}
        raise_server_exceptions = bool(options.pop("raise_server_exceptions", True))
        lifespan = bool(options.pop("lifespan", False))
        logs.append(log or SqliteEditLog(":memory:"))
        transport = MemoryTransport()
        settings = Settings(data_dir=tmp_path, _env_file=None, **options)
        app = create_app(settings, log=logs[-1], transport=transport)
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        if lifespan:
            clients.enter_context(client)
        return Api(client, logs[-1], transport)

    with clients:
        yield make
    for log in logs:
        log.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """The API with the module's defaults (`api_defaults`)."""
    return make_api()


# ---- edit logs ----------------------------------------------------------------------------------
# `edit_log` is parametrised over SQLite (file and `:memory:`) and PostgreSQL; `shared_opener` opens
# several log objects on one store (SQLite file, PostgreSQL schema). PostgreSQL cases carry the
# `postgres` mark (select with `-m postgres`, leave out with `-m "not postgres"`).


def _opener(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> LogOpener:
    if backend == "sqlite-file":
        return LogOpener(backend, lambda: SqliteEditLog(tmp_path / "log.sqlite3"))
    if backend == "sqlite-memory":
        return LogOpener(backend, lambda: SqliteEditLog(":memory:"))
    url = request.getfixturevalue("postgres_url")
    schema = request.getfixturevalue("postgres_schema")
    from store.log.postgres import PostgresEditLog

    return LogOpener(backend, lambda: PostgresEditLog(url, schema=schema))


_POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["sqlite-file", "sqlite-memory", _POSTGRES])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogOpener]:
    made = _opener(request, request.param, tmp_path)
    yield made
    made.close_all()


@pytest.fixture(params=["sqlite-file", _POSTGRES])
def shared_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogOpener]:
    """Backends where two log objects share one store."""
    made = _opener(request, request.param, tmp_path)
    yield made
    made.close_all()


@pytest.fixture
def edit_log(opener: LogOpener) -> SqlEditLog:
    return opener()
