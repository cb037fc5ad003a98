"""The edit log contract, run against SQLite (file and `:memory:`) and PostgreSQL.

`edit_log` is parametrised over the three backends; `shared_opener` opens several log objects
on one store (SQLite file, PostgreSQL schema) for the two-object and reopen tests (both fixtures:
tests/unit/conftest.py). Select the PostgreSQL cases with `-m postgres`, leave them out with
`-m "not postgres"`.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from contract.errors import (
    EditNotFoundError,
    FencedWriterError,
    IdempotencyKeyReusedError,
    LogMismatchError,
    NotFoundError,
    RevisionNotFoundError,
)
from contract.protocol import (
    CommandKind,
    CommandOutcome,
    Lineage,
    NewCommand,
    NewRevision,
    Problem,
    new_id,
    utc_now,
)
from store.log import FileBlobStore, SqliteEditLog
from store.log.blobs import sha256_hex
from store.log.sql import SqlEditLog
from tests.helpers import LogOpener

BASE_CHECKSUM = "b" * 64


@pytest.fixture
def started_log(edit_log: SqlEditLog) -> SqlEditLog:
    """A log with its lineage and revision 0."""
    edit_log.init_lineage(lineage=lineage(), base=base_revision())
    return edit_log


# -- builders ---------------------------------------------------------------------------------


def command(kind: CommandKind = "edit", **body: Any) -> NewCommand:
    return NewCommand(id=new_id(kind), kind=kind, body=body or {"n": 1}, actor="t")


def commands(count: int, kind: CommandKind = "edit") -> list[NewCommand]:
    return [command(kind, n=i) for i in range(count)]


def lineage(*, model: str = "tiny", editor: str = "ft", checksum: str = BASE_CHECKSUM) -> Lineage:
    return Lineage(base_model=model, editor=editor, base_checksum=checksum, created_at=utc_now())


def base_revision() -> NewRevision:
    return NewRevision(
        kind="base", base_revision=None, checksum=BASE_CHECKSUM, editor="ft", editor_version="1"
    )


def edit_revision(*, command_id: str | None = None, edit_ids: list[str] | None = None) -> NewRevision:
    return NewRevision(
        kind="edit", base_revision=None, edit_ids=edit_ids or [], artifacts=["a" * 64],
        checksum="c" * 64, command_id=command_id, actor="t", editor="ft", editor_version="1",
    )


def applied(command_id: str) -> CommandOutcome:
    return CommandOutcome(id=command_id, status="applied", report={"ok": True})


def accept_one(log: SqlEditLog, kind: CommandKind = "edit") -> str:
    records, _ = log.accept([command(kind)])
    return records[0].id


def integrity_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.IntegrityError]
    try:
        import psycopg
    except ImportError:
        return tuple(errors)
    return (*errors, psycopg.IntegrityError)


# -- accept -----------------------------------------------------------------------------------


def test_accept_stores_queued_commands_in_order(edit_log: SqlEditLog) -> None:
    batch = commands(3)
    records, created = edit_log.accept(batch, idempotency_key="k1", body_hash="h1")
    assert created is True
    assert [r.id for r in records] == [c.id for c in batch]
    assert all(r.status == "queued" and r.idempotency_key == "k1" for r in records)
    assert [r.body for r in records] == [c.body for c in batch]
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    later, _ = edit_log.accept([command()])
    assert later[0].seq > seqs[-1]


def test_accept_same_key_and_hash_returns_the_original(edit_log: SqlEditLog) -> None:
    first, _ = edit_log.accept(commands(2), idempotency_key="k", body_hash="h")
    again, created = edit_log.accept(commands(2), idempotency_key="k", body_hash="h")
    assert created is False
    assert again == first
    assert edit_log.count_commands(kind="edit") == 2


def test_accept_same_key_other_hash_is_refused(edit_log: SqlEditLog) -> None:
    edit_log.accept(commands(1), idempotency_key="k", body_hash="h")
    with pytest.raises(IdempotencyKeyReusedError) as caught:
        edit_log.accept(commands(1), idempotency_key="k", body_hash="other")
    assert caught.value.extra["idempotency_key"] == "k"
    assert edit_log.count_commands(kind="edit") == 1


def test_accept_is_all_or_nothing(edit_log: SqlEditLog) -> None:
    existing = command()
    edit_log.accept([existing])
    with pytest.raises(integrity_errors()):
        edit_log.accept([command(), existing], idempotency_key="k", body_hash="h")
    assert edit_log.count_commands(kind="edit") == 1
    records, created = edit_log.accept(commands(1), idempotency_key="k", body_hash="h")
    assert created is True and len(records) == 1


def test_concurrent_accept_on_one_object(edit_log: SqlEditLog) -> None:
    ids = _accept_from_threads([edit_log] * 6, per_thread=10)
    _assert_all_stored_once(edit_log, ids)


def _accept_from_threads(logs: list[SqlEditLog], *, per_thread: int) -> list[str]:
    accepted: list[str] = []
    guard = threading.Lock()

    def work(log: SqlEditLog, worker: int) -> None:
        for i in range(per_thread):
            key = f"w{worker}-{i}" if i % 2 else None
            records, _ = log.accept(commands(2), idempotency_key=key, body_hash="h")
            with guard:
                accepted.extend(r.id for r in records)

    threads = [threading.Thread(target=work, args=(log, n)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return accepted


def _assert_all_stored_once(log: SqlEditLog, ids: list[str]) -> None:
    stored = log.pending_commands()
    assert sorted(r.id for r in stored) == sorted(ids)
    seqs = [r.seq for r in stored]
    assert len(set(seqs)) == len(ids) and seqs == sorted(seqs)


def test_concurrent_accept_on_two_objects(shared_opener: LogOpener) -> None:
    first, second = shared_opener(), shared_opener()
    ids = _accept_from_threads([first, second, first, second], per_thread=8)
    _assert_all_stored_once(first, ids)
    _assert_all_stored_once(second, ids)


# -- reading commands -------------------------------------------------------------------------


def test_get_command(edit_log: SqlEditLog) -> None:
    records, _ = edit_log.accept([command(prompt="p", target="t")])
    assert edit_log.get_command(records[0].id) == records[0]
    with pytest.raises(EditNotFoundError):
        edit_log.get_command("edit_unknown")


def test_get_commands_keeps_the_order_asked_and_skips_unknown(edit_log: SqlEditLog) -> None:
    records, _ = edit_log.accept(commands(3))
    asked = [records[2].id, "edit_unknown", records[0].id]
    assert [r.id for r in edit_log.get_commands(asked)] == [records[2].id, records[0].id]
    assert edit_log.get_commands([]) == []


def test_list_commands_pages_newest_first(edit_log: SqlEditLog) -> None:
    records, _ = edit_log.accept(commands(25))
    edit_log.accept(commands(3, kind="rollback"))
    seen: list[str] = []
    cursor: int | None = None
    pages = 0
    while True:
        page, cursor = edit_log.list_commands(kind="edit", limit=10, cursor=cursor)
        seen.extend(r.id for r in page)
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert seen == [r.id for r in reversed(records)]


def test_list_commands_filters_kind_and_status(edit_log: SqlEditLog) -> None:
    edits, _ = edit_log.accept(commands(4))
    edit_log.accept(commands(2, kind="rollback"))
    edit_log.finish([CommandOutcome(id=edits[1].id, status="failed")])
    failed, cursor = edit_log.list_commands(kind="edit", status="failed")
    assert [r.id for r in failed] == [edits[1].id] and cursor is None
    rollbacks, _ = edit_log.list_commands(kind="rollback")
    assert len(rollbacks) == 2 and all(r.kind == "rollback" for r in rollbacks)
    exact, cursor = edit_log.list_commands(kind="edit", limit=4)
    assert len(exact) == 4 and cursor is None


def test_pending_commands_and_counts(started_log: SqlEditLog) -> None:
    records, _ = started_log.accept(commands(5))
    ids = [r.id for r in records]
    started_log.mark_applying([ids[1]])
    started_log.finish([CommandOutcome(id=ids[2], status="rejected")])
    started_log.append_revision(edit_revision(command_id=ids[3]), [applied(ids[3])])
    pending = started_log.pending_commands()
    assert [r.id for r in pending] == [ids[0], ids[1], ids[4]]
    assert [r.status for r in pending] == ["queued", "applying", "queued"]
    assert started_log.count_pending() == 3


def test_count_commands(edit_log: SqlEditLog) -> None:
    assert edit_log.count_commands(kind="edit") == 0
    edits, _ = edit_log.accept(commands(4))
    edit_log.accept(commands(2, kind="rollback"))
    edit_log.finish([CommandOutcome(id=edits[0].id, status="failed")])
    assert edit_log.count_commands(kind="edit") == 4
    assert edit_log.count_commands(kind="edit", status="queued") == 3
    assert edit_log.count_commands(kind="edit", status="failed") == 1
    assert edit_log.count_commands(kind="rollback", status="queued") == 2
    assert edit_log.count_commands(kind="replay") == 0


def test_mark_applying_moves_only_queued_commands(edit_log: SqlEditLog) -> None:
    records, _ = edit_log.accept(commands(2))
    edit_log.finish([CommandOutcome(id=records[1].id, status="failed")])
    edit_log.mark_applying([r.id for r in records] + ["edit_unknown"])
    assert edit_log.get_command(records[0].id).status == "applying"
    assert edit_log.get_command(records[1].id).status == "failed"


def test_finish_records_outcomes(edit_log: SqlEditLog) -> None:
    records, _ = edit_log.accept(commands(2))
    problem = Problem(title="Rejected", status=422, code="guard_failed", detail="too much changed")
    edit_log.finish([
        CommandOutcome(id=records[0].id, status="rejected", error=problem, report={"changed": 0.9}),
        CommandOutcome(id=records[1].id, status="failed", error=problem),
    ])
    first = edit_log.get_command(records[0].id)
    assert (first.status, first.error, first.report) == ("rejected", problem, {"changed": 0.9})
    assert first.applied_at is not None and first.revision is None
    assert edit_log.get_command(records[1].id).status == "failed"


def test_finish_with_a_stale_epoch_writes_nothing(started_log: SqlEditLog) -> None:
    command_id = accept_one(started_log)
    stale = started_log.acquire_epoch()
    started_log.acquire_epoch()
    with pytest.raises(FencedWriterError):
        started_log.finish([CommandOutcome(id=command_id, status="failed")], epoch=stale)
    assert started_log.get_command(command_id).status == "queued"


# -- lineage and epochs -----------------------------------------------------------------------


def test_init_lineage_writes_revision_zero_once(edit_log: SqlEditLog) -> None:
    assert edit_log.lineage() is None
    first = edit_log.init_lineage(lineage=lineage(), base=base_revision())
    assert first.revision == 0 and first.kind == "base" and first.checksum == BASE_CHECKSUM
    again = edit_log.init_lineage(lineage=lineage(), base=base_revision())
    assert again == first
    assert edit_log.head() == first
    assert edit_log.list_revisions()[0] == [first]
    stored = edit_log.lineage()
    assert stored is not None and (stored.base_model, stored.editor) == ("tiny", "ft")


@pytest.mark.parametrize(
    ("other", "words"),
    [
        (lineage(model="other-model"), "other-model"),
        (lineage(editor="rledit"), "rledit"),
        (lineage(checksum="d" * 64), "base weights differ"),
    ],
)
def test_init_lineage_refuses_another_lineage(started_log: SqlEditLog, other: Lineage, words: str) -> None:
    with pytest.raises(LogMismatchError, match=words):
        started_log.init_lineage(lineage=other, base=base_revision())
    assert started_log.head().revision == 0


def test_acquire_epoch_increments(started_log: SqlEditLog) -> None:
    assert started_log.current_epoch() == 0
    assert started_log.acquire_epoch() == 1
    assert started_log.acquire_epoch() == 2
    assert started_log.current_epoch() == 2


# -- revisions --------------------------------------------------------------------------------


def test_append_revision_numbers_and_stamps_outcomes(started_log: SqlEditLog) -> None:
    records, _ = started_log.accept(commands(2))
    ids = [r.id for r in records]
    epoch = started_log.acquire_epoch()
    rev = started_log.append_revision(edit_revision(command_id=ids[0], edit_ids=ids), [
        applied(ids[0]), CommandOutcome(id=ids[1], status="applied", revision=0),
    ], epoch=epoch)
    assert rev.revision == 1 and rev.edit_ids == ids
    assert started_log.head() == rev == started_log.get_revision(1)
    first = started_log.get_command(ids[0])
    assert (first.status, first.revision, first.report) == ("applied", 1, {"ok": True})
    assert first.applied_at == rev.created_at
    assert started_log.get_command(ids[1]).revision == 0
    assert started_log.append_revision(edit_revision(), [], epoch=epoch).revision == 2


def test_append_revision_is_atomic(started_log: SqlEditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    records, _ = started_log.accept(commands(2))
    ids = [r.id for r in records]
    real = started_log._write_outcomes

    def write_then_fail(cursor: Any, outcomes: Any, now: str) -> None:
        real(cursor, outcomes, now)
        raise OSError("disk went away")

    monkeypatch.setattr(started_log, "_write_outcomes", write_then_fail)
    with pytest.raises(OSError, match="disk went away"):
        started_log.append_revision(edit_revision(command_id=ids[0]), [applied(i) for i in ids])
    monkeypatch.undo()
    assert started_log.head().revision == 0
    assert [started_log.get_command(i).status for i in ids] == ["queued", "queued"]
    assert started_log.append_revision(edit_revision(command_id=ids[0]), [applied(ids[0])]).revision == 1


def test_append_revision_refuses_a_resolved_command(started_log: SqlEditLog) -> None:
    command_id = accept_one(started_log)
    started_log.append_revision(edit_revision(command_id=command_id), [applied(command_id)])
    with pytest.raises(FencedWriterError, match="already resolved"):
        started_log.append_revision(edit_revision(command_id=command_id), [applied(command_id)])
    assert started_log.head().revision == 1
    assert started_log.get_command(command_id).revision == 1


def test_append_revision_accepts_an_applying_command(started_log: SqlEditLog) -> None:
    command_id = accept_one(started_log)
    started_log.mark_applying([command_id])
    rev = started_log.append_revision(edit_revision(command_id=command_id), [applied(command_id)])
    assert started_log.get_command(command_id).revision == rev.revision


def test_append_revision_with_unknown_command_writes_nothing(started_log: SqlEditLog) -> None:
    with pytest.raises(NotFoundError):
        started_log.append_revision(edit_revision(command_id="edit_unknown"), [])
    assert started_log.head().revision == 0


def test_append_revision_with_a_stale_epoch_writes_nothing(started_log: SqlEditLog) -> None:
    command_id = accept_one(started_log)
    stale = started_log.acquire_epoch()
    assert started_log.acquire_epoch() == stale + 1
    with pytest.raises(FencedWriterError, match="superseded"):
        started_log.append_revision(edit_revision(command_id=command_id), [applied(command_id)], epoch=stale)
    assert started_log.head().revision == 0
    assert started_log.get_command(command_id).status == "queued"


def test_append_revision_needs_revision_zero(edit_log: SqlEditLog) -> None:
    with pytest.raises(RevisionNotFoundError, match="init_lineage"):
        edit_log.append_revision(edit_revision(), [])


def test_head_and_get_revision_of_unknown(edit_log: SqlEditLog) -> None:
    with pytest.raises(RevisionNotFoundError):
        edit_log.head()
    edit_log.init_lineage(lineage=lineage(), base=base_revision())
    with pytest.raises(RevisionNotFoundError) as caught:
        edit_log.get_revision(7)
    assert caught.value.extra["revision"] == 7


def test_list_revisions_pages_newest_first(started_log: SqlEditLog) -> None:
    for _ in range(6):
        started_log.append_revision(edit_revision(), [])
    numbers: list[int] = []
    cursor: int | None = None
    while True:
        page, cursor = started_log.list_revisions(limit=3, cursor=cursor)
        numbers.extend(r.revision for r in page)
        if cursor is None:
            break
    assert numbers == [6, 5, 4, 3, 2, 1, 0]


def test_revisions_between(started_log: SqlEditLog) -> None:
    for _ in range(4):
        started_log.append_revision(edit_revision(), [])
    assert [r.revision for r in started_log.revisions_between(1, 3)] == [1, 2, 3]
    assert [r.revision for r in started_log.revisions_between(3, 9)] == [3, 4]
    assert started_log.revisions_between(5, 9) == []


# -- snapshots and blobs ----------------------------------------------------------------------


def test_snapshots(started_log: SqlEditLog) -> None:
    assert started_log.latest_snapshot(10) is None
    started_log.put_snapshot(0, "0" * 64)
    started_log.put_snapshot(5, "5" * 64)
    assert started_log.latest_snapshot(4) == (0, "0" * 64)
    assert started_log.latest_snapshot(5) == (5, "5" * 64)
    assert started_log.latest_snapshot(99) == (5, "5" * 64)
    started_log.put_snapshot(5, "6" * 64)
    assert started_log.latest_snapshot(5) == (5, "6" * 64)


def test_blobs_round_trip(edit_log: SqlEditLog) -> None:
    data = bytes(range(256)) * 64
    sha = edit_log.blobs.put(data)
    assert sha == sha256_hex(data)
    assert edit_log.blobs.put(data) == sha
    assert edit_log.blobs.has(sha)
    assert edit_log.blobs.get(sha) == data
    assert edit_log.blobs.get(edit_log.blobs.put(b"")) == b""


def test_blobs_unknown_and_bad_ids(edit_log: SqlEditLog) -> None:
    unknown = sha256_hex(b"never stored")
    assert not edit_log.blobs.has(unknown)
    with pytest.raises(NotFoundError, match="missing"):
        edit_log.blobs.get(unknown)
    for bad in ("", "abc", "A" * 64, "../" + "a" * 61, "g" * 64):
        with pytest.raises(NotFoundError, match="not a blob id"):
            edit_log.blobs.get(bad)
        with pytest.raises(NotFoundError, match="not a blob id"):
            edit_log.blobs.has(bad)


# -- two objects on one store -----------------------------------------------------------------


def test_a_second_object_sees_accepts_and_revisions(shared_opener: LogOpener) -> None:
    first, second = shared_opener(), shared_opener()
    first.init_lineage(lineage=lineage(), base=base_revision())
    assert second.init_lineage(lineage=lineage(), base=base_revision()).revision == 0
    records, _ = first.accept(commands(2), idempotency_key="k", body_hash="h")
    assert second.get_commands([r.id for r in records]) == records
    assert second.accept(commands(2), idempotency_key="k", body_hash="h") == (records, False)
    rev = second.append_revision(edit_revision(command_id=records[0].id), [applied(records[0].id)])
    assert first.head() == rev
    assert first.get_command(records[0].id).status == "applied"


def test_an_epoch_taken_by_another_object_fences(shared_opener: LogOpener) -> None:
    old, new = shared_opener(), shared_opener()
    old.init_lineage(lineage=lineage(), base=base_revision())
    old_epoch = old.acquire_epoch()
    new_epoch = new.acquire_epoch()
    assert new_epoch == old_epoch + 1 and old.current_epoch() == new_epoch
    with pytest.raises(FencedWriterError):
        old.append_revision(edit_revision(), [], epoch=old_epoch)
    assert new.append_revision(edit_revision(), [], epoch=new_epoch).revision == 1


def test_commits_survive_reopening(shared_opener: LogOpener) -> None:
    log = shared_opener()
    log.init_lineage(lineage=lineage(), base=base_revision())
    records, _ = log.accept(commands(3), idempotency_key="k", body_hash="h")
    rev = log.append_revision(edit_revision(command_id=records[0].id), [applied(records[0].id)])
    sha = log.blobs.put(b"artifact bytes")
    log.put_snapshot(rev.revision, sha)
    log.close()
    reopened = shared_opener()
    assert reopened.head() == rev
    assert reopened.accept(commands(3), idempotency_key="k", body_hash="h")[1] is False
    assert [r.id for r in reopened.pending_commands()] == [r.id for r in records[1:]]
    assert reopened.latest_snapshot(rev.revision) == (rev.revision, sha)
    assert reopened.blobs.get(sha) == b"artifact bytes"


# -- SQLite file specifics --------------------------------------------------------------------


def test_sqlite_file_runs_wal_and_synchronous_full(tmp_path: Path) -> None:
    log = SqliteEditLog(tmp_path / "log.sqlite3")
    try:
        assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        log.close()


def test_sqlite_file_blobs_are_files_and_corruption_is_detected(tmp_path: Path) -> None:
    log = SqliteEditLog(tmp_path / "log.sqlite3")
    try:
        sha = log.blobs.put(b"weights")
        path = tmp_path / "objects" / sha[:2] / sha[2:]
        assert path.read_bytes() == b"weights"
        assert FileBlobStore(tmp_path / "objects").get(sha) == b"weights"
        path.write_bytes(b"weightz")
        with pytest.raises(NotFoundError, match="corrupt"):
            log.blobs.get(sha)
    finally:
        log.close()


_CHILD = """
import sys
from store.log import SqliteEditLog
from contract.protocol import NewCommand, new_id
log = SqliteEditLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    log.accept([NewCommand(id=new_id("edit"), kind="edit", body={"child": i})])
log.close()
"""


def test_sqlite_file_accepts_from_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = SqliteEditLog(path)
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path), "40"])
        ids = [accept_one(log) for _ in range(40)]
        assert child.wait(timeout=60) == 0
        stored = log.pending_commands()
        assert len(stored) == 80 and set(ids) <= {r.id for r in stored}
        assert len({r.seq for r in stored}) == 80
    finally:
        log.close()


# -- subjects, facts and superseding -------------------------------------------------------------


def edit_command(prompt: str, subject: str | None = None) -> NewCommand:
    body: dict[str, Any] = {"prompt": prompt, "target": "x"}
    if subject is not None:
        body["subject"] = subject
    return NewCommand(id=new_id("ed"), kind="edit", body=body, actor="t")


def test_an_edit_records_its_subject_given_or_inferred(edit_log: SqlEditLog) -> None:
    given, inferred, none = edit_log.accept([
        edit_command("Where is the eiffel tower?", subject="eiffel  tower"),
        edit_command("The Eiffel Tower is located in the city of"),
        edit_command("is"),
    ])[0]
    assert (given.subject, inferred.subject, none.subject) == ("eiffel tower", "The Eiffel Tower", None)
    assert edit_log.get_command(inferred.id).subject == "The Eiffel Tower"


def test_a_subjects_edits_newest_first_case_insensitively(edit_log: SqlEditLog) -> None:
    ids = [r.id for r in edit_log.accept([
        edit_command("The Eiffel Tower is located in the city of"),
        edit_command("The Louvre is located in the city of"),
        edit_command("Where is the eiffel tower?", subject="EIFFEL TOWER"),
        edit_command("The Eiffel Tower was designed by", subject="The Eiffel Tower"),
    ])[0]]
    items, cursor = edit_log.list_subject_edits("eiffel tower")
    assert [r.id for r in items] == [ids[3], ids[2], ids[0]] and cursor is None
    page, cursor = edit_log.list_subject_edits("The  Eiffel Tower", limit=2)
    assert [r.id for r in page] == [ids[3], ids[2]] and cursor is not None
    rest, end = edit_log.list_subject_edits("Eiffel Tower", limit=2, cursor=cursor)
    assert [r.id for r in rest] == [ids[0]] and end is None
    edit_log.finish([applied(ids[0])])
    assert [r.id for r in edit_log.list_subject_edits("eiffel tower", status="applied")[0]] == [ids[0]]
    assert edit_log.list_subject_edits("Eiffel")[0] == []


def test_applied_edits_of_the_same_fact(started_log: SqlEditLog) -> None:
    first, other, second = (r.id for r in started_log.accept([
        edit_command("The Eiffel Tower is located in the city of", subject="Eiffel Tower"),
        edit_command("The Eiffel Tower stands in the city of", subject="Eiffel Tower"),
        edit_command("The Eiffel Tower is located in  the city of "),  # subject inferred
    ])[0])
    assert started_log.applied_same_fact(second) == []  # nothing applied yet
    started_log.append_revision(edit_revision(command_id=first, edit_ids=[first, other]),
                                [applied(first), applied(other)])
    assert [r.id for r in started_log.applied_same_fact(second)] == [first]
    assert started_log.applied_same_fact(other) == []


def test_superseding_outcomes_link_both_edits(started_log: SqlEditLog) -> None:
    first, second = (r.id for r in started_log.accept([
        edit_command("The capital of Peru is"), edit_command("The capital of Peru is")])[0])
    started_log.append_revision(edit_revision(command_id=first, edit_ids=[first]), [applied(first)])
    revision = NewRevision(kind="supersede", base_revision=0, edit_ids=[second], removed_ids=[first],
                           artifacts=["a" * 64], checksum="d" * 64, command_id=second, editor="ft",
                           editor_version="1")
    record = started_log.append_revision(revision, [
        CommandOutcome(id=second, status="applied", supersedes=first),
        CommandOutcome(id=first, status="superseded", superseded_by=second),
    ])
    old, new = started_log.get_command(first), started_log.get_command(second)
    assert (old.status, old.superseded_by, old.revision) == ("superseded", second, 1)
    assert (new.status, new.supersedes, new.revision) == ("applied", first, record.revision)
    assert started_log.get_revision(record.revision).kind == "supersede"
    assert started_log.superseding([first, second]) == [(first, second)]
    # Back in effect (a rollback past the supersede): no longer superseded by anyone.
    started_log.append_revision(edit_revision(command_id=accept_one(started_log)),
                                [CommandOutcome(id=first, status="applied", revision=1)])
    assert (started_log.get_command(first).status, started_log.get_command(first).superseded_by) == ("applied", None)
    assert started_log.get_command(second).supersedes == first


def _old_edit_body() -> str:
    return '{"prompt": "The Eiffel Tower is located in the city of", "target": "Rome"}'


def test_an_older_sqlite_log_gains_the_new_columns(tmp_path: Path) -> None:
    from store.log.sqlite import _TABLES

    path = tmp_path / "log.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(_TABLES)  # the commands table as the first release made it
        conn.execute("INSERT INTO commands (id, kind, status, body, created_at) VALUES ('ed_old', 'edit', "
                     "'applied', ?, 'then')", (_old_edit_body(),))
    log = SqliteEditLog(path)
    try:
        assert log.get_command("ed_old").subject == "The Eiffel Tower"
        assert [r.id for r in log.list_subject_edits("eiffel tower")[0]] == ["ed_old"]
        new = log.accept([edit_command("The Eiffel Tower is located in the city of")])[0][0]
        assert [r.id for r in log.applied_same_fact(new.id)] == ["ed_old"]
    finally:
        log.close()
    SqliteEditLog(path).close()  # opening it again changes nothing


@pytest.mark.postgres
def test_an_older_postgres_log_gains_the_new_columns(postgres_url: str, postgres_schema: str) -> None:
    import psycopg

    from store.log.postgres import _TABLES, PostgresEditLog

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{postgres_schema}"')
        conn.execute(f'SET search_path TO "{postgres_schema}"')
        conn.execute(_TABLES)  # type: ignore[arg-type]
        conn.execute("INSERT INTO commands (id, kind, status, body, created_at) VALUES ('ed_old', 'edit', "
                     "'applied', %s, 'then')", (_old_edit_body(),))
    logs = [PostgresEditLog(postgres_url, schema=postgres_schema) for _ in range(2)]  # the second: no-op
    try:
        assert logs[1].get_command("ed_old").subject == "The Eiffel Tower"
        assert [r.id for r in logs[0].list_subject_edits("EIFFEL TOWER")[0]] == ["ed_old"]
    finally:
        for log in logs:
            log.close()
