"""PostgresEditLog against a real server: several connections, fencing, reconnect, blobs in the DB.

The backend-neutral contract runs in tests/unit/test_log.py (its `postgres` params); this file
holds what only a shared server can show. Every test uses its own schema (`postgres_schema`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from contract.config import Settings
from contract.errors import FencedWriterError, NotFoundError, UnavailableError
from contract.protocol import Lineage, NewCommand, NewRevision, new_id, utc_now
from store.log import open_log
from tests.helpers import wait_until

pytestmark = pytest.mark.postgres

try:
    import psycopg

    from store.log.postgres import PostgresEditLog
except ImportError:  # every test needs `postgres_url`, which skips (or fails under REQUIRE_POSTGRES)
    pass

_LINEAGE = Lineage(base_model="tiny", editor="ft", base_checksum="b" * 64, created_at=utc_now())
_BASE = NewRevision(kind="base", base_revision=None, checksum="b" * 64, editor="ft", editor_version="1")
_EDIT = NewRevision(kind="edit", base_revision=None, checksum="c" * 64, editor="ft", editor_version="1")


@pytest.fixture
def open_pg(postgres_url: str, postgres_schema: str) -> Iterator[Callable[[], Any]]:
    """Opens PostgresEditLog objects (one connection each) on the test's schema."""
    opened: list[Any] = []

    def make() -> Any:
        log = PostgresEditLog(postgres_url, schema=postgres_schema)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


@pytest.fixture
def admin(postgres_url: str) -> Iterator[Any]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def _append_many(log: Any, count: int, numbers: list[int], *, epoch: int | None = None) -> None:
    for _ in range(count):
        numbers.append(log.append_revision(_EDIT, [], epoch=epoch).revision)


def test_two_connections_append_concurrently_without_duplicates(open_pg: Callable[[], Any]) -> None:
    first, second = open_pg(), open_pg()
    first.init_lineage(lineage=_LINEAGE, base=_BASE)
    got: dict[str, list[int]] = {"first": [], "second": []}
    threads = [
        threading.Thread(target=_append_many, args=(log, 25, got[name]))
        for name, log in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got["first"] + got["second"]) == list(range(1, 51))
    assert got["first"] == sorted(got["first"]) and got["second"] == sorted(got["second"])
    assert second.head().revision == 50 == first.head().revision


def test_a_stale_writer_is_fenced_while_another_takes_over(open_pg: Callable[[], Any]) -> None:
    old, new = open_pg(), open_pg()
    old.init_lineage(lineage=_LINEAGE, base=_BASE)
    old_epoch = old.acquire_epoch()
    old_numbers: list[int] = []
    fenced: list[BaseException] = []
    started = threading.Event()

    def stale_writer() -> None:
        try:
            for _ in range(10_000):
                old_numbers.append(old.append_revision(_EDIT, [], epoch=old_epoch).revision)
                if len(old_numbers) == 3:
                    started.set()
        except FencedWriterError as exc:
            fenced.append(exc)

    thread = threading.Thread(target=stale_writer)
    thread.start()
    assert started.wait(timeout=30)
    new_epoch = new.acquire_epoch()
    new_numbers: list[int] = []
    _append_many(new, 5, new_numbers, epoch=new_epoch)
    thread.join(timeout=30)
    assert fenced and not thread.is_alive()
    assert max(old_numbers) < min(new_numbers)
    assert sorted(old_numbers + new_numbers) == list(range(1, len(old_numbers) + 6))


def test_the_same_idempotency_key_from_two_connections_creates_once(open_pg: Callable[[], Any]) -> None:
    logs = [open_pg() for _ in range(4)]
    results: list[tuple[list[Any], bool]] = []
    barrier = threading.Barrier(len(logs))

    def accept(log: Any) -> None:
        batch = [NewCommand(id=new_id("edit"), kind="edit", body={"same": True})]
        barrier.wait()
        results.append(log.accept(batch, idempotency_key="shared", body_hash="h"))

    threads = [threading.Thread(target=accept, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert len({records[0].id for records, _ in results}) == 1
    assert logs[0].count_commands(kind="edit") == 1


def backend_exited(admin: Any, pid: int) -> bool:
    """Whether server process `pid` is gone; it sent its client the FATAL error before it exited."""
    return admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() is None


def test_a_broken_connection_is_replaced_on_the_next_call(open_pg: Callable[[], Any], admin: Any) -> None:
    log = open_pg()
    log.init_lineage(lineage=_LINEAGE, base=_BASE)
    for call in (log.head, log.acquire_epoch):
        pid = log._conn.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        wait_until(lambda pid=pid: backend_exited(admin, pid), timeout=30, what=f"the terminated backend {pid} to exit")
        with pytest.raises(UnavailableError, match="unreachable"):
            call()
        call()
    assert log.current_epoch() == 1
    assert log.head().revision == 0


def test_reads_leave_no_transaction_open(open_pg: Callable[[], Any]) -> None:
    log = open_pg()
    log.init_lineage(lineage=_LINEAGE, base=_BASE)
    idle = psycopg.pq.TransactionStatus.IDLE
    log.head()
    assert log._conn.info.transaction_status == idle
    with pytest.raises(psycopg.errors.UndefinedColumn):
        log._query("SELECT no_such_column FROM meta")
    assert log._conn.info.transaction_status == idle
    assert log.head().revision == 0


def test_blobs_live_in_the_database(open_pg: Callable[[], Any], admin: Any, postgres_schema: str) -> None:
    log = open_pg()
    sha = log.blobs.put(b"artifact")
    table = f'"{postgres_schema}".blobs'
    row = admin.execute(f"SELECT data FROM {table} WHERE sha = %s", (sha,)).fetchone()
    assert bytes(row[0]) == b"artifact"
    assert open_pg().blobs.get(sha) == b"artifact"
    admin.execute(f"UPDATE {table} SET data = %s WHERE sha = %s", (b"tampered", sha))
    with pytest.raises(NotFoundError, match="corrupt"):
        log.blobs.get(sha)


def test_open_log_picks_postgres_for_a_postgresql_url(
    postgres_url: str, postgres_schema: str, admin: Any
) -> None:
    admin.execute(f'CREATE SCHEMA "{postgres_schema}"')
    separator = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{separator}options={quote(f'-csearch_path={postgres_schema}')}"
    log = open_log(Settings(database_url=url))
    try:
        assert isinstance(log, PostgresEditLog)
        log.init_lineage(lineage=_LINEAGE, base=_BASE)
        tables = admin.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (postgres_schema,))
        wanted = {"meta", "commands", "revisions", "snapshots", "blobs", "idempotency"}
        assert wanted <= {r[0] for r in tables}
    finally:
        log.close()


def test_a_closed_log_refuses_calls(open_pg: Callable[[], Any]) -> None:
    log = open_pg()
    log.close()
    with pytest.raises(UnavailableError, match="closed"):
        log.head()


def test_bad_schema_names_and_unreachable_servers(postgres_url: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        PostgresEditLog(postgres_url, schema='x"; DROP TABLE meta; --')
    with pytest.raises(UnavailableError, match="cannot connect"):
        PostgresEditLog("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
