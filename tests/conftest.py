"""Shared fixtures: a clean FACTPATCH_ environment, a tiny model host, test settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LENIENT_GUARD, TINY_EDITOR_CONFIGS

# Variables that configure the test run itself, not factpatch: `clean_environ` leaves them alone.
TEST_RUN_VARIABLES = (
    "FACTPATCH_REQUIRE_POSTGRES",  # 1: no reachable PostgreSQL fails the postgres tests (CI) instead of skipping
    "FACTPATCH_TEST_DATABASE_URL",  # the PostgreSQL server of the postgres tests
    "FACTPATCH_REQUIRE_REDIS",  # 1: no redis-server binary fails the redis tests (CI) instead of skipping
    "FACTPATCH_TEST_MODELS_DIR",  # where tests/real finds (or converts) the real default model
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FACTPATCH_ variable from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("FACTPATCH_") and key not in TEST_RUN_VARIABLES:
            monkeypatch.delenv(key, raising=False)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Torch on one intra-op thread for the test (`tests.tiny.single_thread`); modules whose tiny-model
    work is latency-bound use it with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    from tests.tiny import single_thread

    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def tiny_host() -> Iterator[Any]:
    from tests.tiny import new_host

    yield new_host()


@pytest.fixture()
def tiny_settings(tmp_path: Path, tiny_model_dir: Path) -> Any:
    from contract.config import Settings

    return Settings(
        model=str(tiny_model_dir),
        data_dir=tmp_path / "data",
        editor="ft",
        editors=TINY_EDITOR_CONFIGS,
        guard=LENIENT_GUARD,
        log={"snapshot_every": 3},
        query_timeout=30.0,
    )


# -- PostgreSQL ---------------------------------------------------------------------------------
# `postgres_url`: a reachable server (FACTPATCH_TEST_DATABASE_URL, else 127.0.0.1:5432/test as
# `postgres` or `root`); unreachable means skip, or fail when FACTPATCH_REQUIRE_POSTGRES=1 (CI).
# `postgres_schema`: a fresh schema name for one test, dropped (CASCADE) afterwards.

_DEFAULT_POSTGRES_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


def _reachable_postgres() -> tuple[str | None, str]:
    """The first URL that answers `SELECT 1`, or None and why none did."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed (pip install 'psycopg[binary]')"
    configured = os.environ.get("FACTPATCH_TEST_DATABASE_URL")
    errors: list[str] = []
    for url in (configured,) if configured else _DEFAULT_POSTGRES_URLS:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return url, ""
        except psycopg.Error as exc:
            errors.append(f"{url.split('@')[-1]}: {' '.join(str(exc).split())}")
    return None, "PostgreSQL unreachable (" + "; ".join(errors) + ")"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url, reason = _reachable_postgres()
    if url is not None:
        return url
    if os.environ.get("FACTPATCH_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"FACTPATCH_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(f"{reason}; set FACTPATCH_TEST_DATABASE_URL to run the postgres tests")


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A unique schema name for one test; the schema (created by the code under test) is dropped."""
    import uuid

    import psycopg

    name = f"fp_test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
