"""The edit log over a DB-API connection, in SQL that SQLite and PostgreSQL both run.

Subclasses provide the connection, the DDL and the transaction start; every query here is
written with `?` placeholders and translated once for drivers that use `%s`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from contract.errors import (
    EditNotFoundError,
    FencedWriterError,
    IdempotencyKeyReusedError,
    LogMismatchError,
    NotFoundError,
    RevisionNotFoundError,
)
from contract.protocol import (
    PENDING_STATUSES,
    CommandKind,
    CommandOutcome,
    CommandRecord,
    CommandStatus,
    Lineage,
    NewCommand,
    NewRevision,
    Problem,
    RevisionRecord,
    utc_now,
)
from contract.subjects import edit_subject, fact_key, subject_key
from store.log.base import BlobStore
from store.log.keys import SqlKeyStore

_COMMAND_COLUMNS = (
    "seq, id, kind, status, body, revision, report, error, actor, idempotency_key, created_at, applied_at, "
    "subject, supersedes, superseded_by"
)
# Columns added after the first release: created on logs that lack them (`_migrate`), and filled
# for edits accepted before (`_backfill_subjects`). `subject_key` and `fact_key` are '' when an edit
# has no subject (none given, none inferred).
ADDED_COMMAND_COLUMNS: tuple[str, ...] = ("subject", "subject_key", "fact_key", "supersedes", "superseded_by")
_ADDED_INDEXES = (
    "CREATE INDEX IF NOT EXISTS commands_subject ON commands (subject_key, seq)",
    "CREATE INDEX IF NOT EXISTS commands_fact ON commands (fact_key, status)",
)
_REVISION_COLUMNS = (
    "revision, kind, base_revision, edit_ids, removed_ids, artifacts, checksum, command_id, actor, "
    "editor, editor_version, created_at"
)


_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    seq {serial},
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    revision {integer},
    report TEXT,
    error TEXT,
    actor TEXT,
    idempotency_key TEXT,
    created_at TEXT NOT NULL,
    applied_at TEXT
);
CREATE INDEX IF NOT EXISTS commands_kind_seq ON commands (kind, seq);
CREATE INDEX IF NOT EXISTS commands_status ON commands (status, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    body_hash TEXT NOT NULL,
    command_ids TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
    revision {integer} PRIMARY KEY,
    kind TEXT NOT NULL,
    base_revision {integer},
    edit_ids TEXT NOT NULL,
    removed_ids TEXT NOT NULL,
    artifacts TEXT NOT NULL,
    checksum TEXT NOT NULL,
    command_id TEXT,
    actor TEXT,
    editor TEXT NOT NULL,
    editor_version TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    revision {integer} PRIMARY KEY,
    blob TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""


def tables_ddl(*, serial: str, integer: str) -> str:
    """The edit log's tables, one definition for both databases: `serial` is the type of an
    auto-increment primary key, `integer` of a revision number."""
    return _TABLES.format(serial=serial, integer=integer)

class SqlEditLog(SqlKeyStore):
    """Shared logic of the SQL edit logs (and the API keys, `SqlKeyStore`). One connection per log
    object, guarded by a lock."""

    placeholder = "?"

    def __init__(self, *, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._lock = threading.RLock()
        self._conn: Any = None

    # -- to be provided by a dialect ------------------------------------------------------------
    def _begin(self, cursor: Any) -> None:
        raise NotImplementedError

    def _insert_command(self, cursor: Any, params: tuple[Any, ...]) -> int:
        """Insert (id, kind, status, body, actor, idempotency_key, created_at, subject, subject_key,
        fact_key); return the new `seq`."""
        raise NotImplementedError

    def _missing_columns(self, cursor: Any) -> list[str]:
        """Which of `ADDED_COMMAND_COLUMNS` the commands table lacks."""
        raise NotImplementedError

    # -- schema upgrades ------------------------------------------------------------------------
    def _migrate(self) -> None:
        """Add the columns and indexes later releases need, then fill them for older edits."""
        with self._tx() as cur:
            for column in self._missing_columns(cur):
                self._exec(cur, f"ALTER TABLE commands ADD COLUMN {column} TEXT")
            for statement in _ADDED_INDEXES:
                self._exec(cur, statement)
        self._backfill_subjects()

    def _backfill_subjects(self) -> None:
        rows = self._query("SELECT id, body FROM commands WHERE kind = 'edit' AND subject_key IS NULL")
        if not rows:
            return
        with self._tx() as cur:
            for command_id, body in rows:
                subject, key, fact = _subject_columns("edit", json.loads(body))
                self._exec(cur, "UPDATE commands SET subject = ?, subject_key = ?, fact_key = ? WHERE id = ?",
                           (subject, key, fact, command_id))

    # -- plumbing -------------------------------------------------------------------------------
    @property
    def blobs(self) -> BlobStore:
        return self._blobs

    def _sql(self, text: str) -> str:
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A write transaction: everything inside commits together or not at all."""
        with self._lock:
            cursor = self._conn.cursor()
            self._begin(cursor)
            try:
                yield cursor
            except BaseException:
                self._conn.rollback()
                raise
            else:
                self._conn.commit()
            finally:
                cursor.close()

    def _query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cursor = self._conn.cursor()
            try:
                cursor.execute(self._sql(text), tuple(params))
                rows = list(cursor.fetchall())
            finally:
                cursor.close()
            self._end_read()
            return rows

    def _end_read(self) -> None:
        """Drivers that open an implicit transaction on read close it here."""

    def _exec(self, cursor: Any, text: str, params: Sequence[Any] = ()) -> None:
        cursor.execute(self._sql(text), tuple(params))

    def _meta(self, cursor: Any, key: str) -> str | None:
        self._exec(cursor, "SELECT value FROM meta WHERE key = ?", (key,))
        row = cursor.fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, cursor: Any, key: str, value: str) -> None:
        self._exec(cursor, "DELETE FROM meta WHERE key = ?", (key,))
        self._exec(cursor, "INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- lineage and fencing ----------------------------------------------------------------------
    def lineage(self) -> Lineage | None:
        rows = self._query("SELECT value FROM meta WHERE key = 'lineage'")
        return Lineage.model_validate_json(rows[0][0]) if rows else None

    def init_lineage(self, *, lineage: Lineage, base: NewRevision) -> RevisionRecord:
        """Record revision 0 on an empty log, or check that the log belongs to this lineage."""
        with self._tx() as cur:
            stored = self._meta(cur, "lineage")
            if stored is None:
                self._set_meta(cur, "lineage", lineage.model_dump_json())
                self._set_meta(cur, "epoch", "0")
                return self._insert_revision(cur, base, number=0)
        known = Lineage.model_validate_json(stored)
        _check_lineage(known, lineage)
        return self.get_revision(0)

    def acquire_epoch(self) -> int:
        """Start a new writer epoch; commits stamped with an older epoch are refused from now on."""
        with self._tx() as cur:
            epoch = int(self._meta(cur, "epoch") or 0) + 1
            self._set_meta(cur, "epoch", str(epoch))
        return epoch

    def current_epoch(self) -> int:
        rows = self._query("SELECT value FROM meta WHERE key = 'epoch'")
        return int(rows[0][0]) if rows else 0

    def _check_epoch(self, cursor: Any, epoch: int | None) -> None:
        if epoch is None:
            return
        current = int(self._meta(cursor, "epoch") or 0)
        if current != epoch:
            raise FencedWriterError(f"writer epoch {epoch} was superseded by epoch {current}")

    # -- commands -------------------------------------------------------------------------------
    def accept(
        self,
        commands: Sequence[NewCommand],
        *,
        idempotency_key: str | None = None,
        body_hash: str | None = None,
    ) -> tuple[list[CommandRecord], bool]:
        """Store new requests durably; a known idempotency key returns the original ones."""
        now = utc_now()
        with self._tx() as cur:
            if idempotency_key is not None:
                existing = self._idempotent(cur, idempotency_key, body_hash)
                if existing is not None:
                    return self._fetch_commands(cur, existing), False
            for command in commands:
                params = (command.id, command.kind, "queued", json.dumps(command.body), command.actor,
                          idempotency_key, now, *_subject_columns(command.kind, command.body))
                self._insert_command(cur, params)
            if idempotency_key is not None:
                self._exec(
                    cur,
                    "INSERT INTO idempotency (key, body_hash, command_ids, created_at) VALUES (?, ?, ?, ?)",
                    (idempotency_key, body_hash or "", json.dumps([c.id for c in commands]), now),
                )
            return self._fetch_commands(cur, [c.id for c in commands]), True

    def _idempotent(self, cursor: Any, key: str, body_hash: str | None) -> list[str] | None:
        self._exec(cursor, "SELECT body_hash, command_ids FROM idempotency WHERE key = ?", (key,))
        row = cursor.fetchone()
        if row is None:
            return None
        if row[0] != (body_hash or ""):
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was used before with a different request body", idempotency_key=key
            )
        return list(json.loads(row[1]))

    def _fetch_commands(self, cursor: Any, ids: Sequence[str]) -> list[CommandRecord]:
        if not ids:
            return []
        marks = ",".join("?" for _ in ids)
        self._exec(cursor, f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id IN ({marks})", ids)
        by_id = {row[1]: _command(row) for row in cursor.fetchall()}
        return [by_id[i] for i in ids if i in by_id]

    def get_command(self, command_id: str) -> CommandRecord:
        rows = self._query(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?", (command_id,))
        if not rows:
            raise EditNotFoundError(f"no request with id {command_id}", edit_id=command_id)
        return _command(rows[0])

    def get_commands(self, command_ids: Sequence[str]) -> list[CommandRecord]:
        if not command_ids:
            return []
        marks = ",".join("?" for _ in command_ids)
        rows = self._query(f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id IN ({marks})", command_ids)
        by_id = {row[1]: _command(row) for row in rows}
        return [by_id[i] for i in command_ids if i in by_id]

    def list_commands(
        self,
        *,
        kind: CommandKind,
        status: CommandStatus | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[CommandRecord], int | None]:
        """Newest first; the cursor is the `seq` below which the next page starts."""
        return self._command_page(["kind = ?"], [kind], status=status, limit=limit, cursor=cursor)

    def list_subject_edits(
        self, subject: str, *, status: CommandStatus | None = None, limit: int = 50, cursor: int | None = None
    ) -> tuple[list[CommandRecord], int | None]:
        """A subject's edits (given or inferred subject, compared by `subject_key`), newest first."""
        return self._command_page(["kind = 'edit'", "subject_key = ?"], [subject_key(subject)],
                                  status=status, limit=limit, cursor=cursor)

    def _command_page(
        self, where: list[str], params: list[Any], *, status: CommandStatus | None, limit: int, cursor: int | None
    ) -> tuple[list[CommandRecord], int | None]:
        """One page of the commands matching `where` (and status), newest first, with the next cursor."""
        if status is not None:
            where, params = [*where, "status = ?"], [*params, status]
        if cursor is not None:
            where, params = [*where, "seq < ?"], [*params, cursor]
        text = f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?"
        rows = self._query(text, [*params, limit + 1])
        items = [_command(r) for r in rows[:limit]]
        return items, (items[-1].seq if len(rows) > limit else None)

    def applied_same_fact(self, command_id: str) -> list[CommandRecord]:
        """Applied edits of the same fact as edit `command_id` (same `fact_key`), oldest first."""
        rows = self._query(
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE kind = 'edit' AND status = 'applied' AND id <> ? "
            "AND fact_key <> '' AND fact_key = (SELECT fact_key FROM commands WHERE id = ?) ORDER BY seq",
            (command_id, command_id),
        )
        return [_command(r) for r in rows]

    def superseding(self, command_ids: Sequence[str]) -> list[tuple[str, str]]:
        """(superseded id, id of an edit that superseded it) for every such edit of `command_ids`."""
        if not command_ids:
            return []
        marks = ",".join("?" for _ in command_ids)
        rows = self._query(
            f"SELECT supersedes, id FROM commands WHERE supersedes IN ({marks}) ORDER BY seq", command_ids
        )
        return [(str(a), str(b)) for a, b in rows]

    def pending_commands(self) -> list[CommandRecord]:
        """Accepted but unresolved requests, in acceptance order (what a reconciler re-enqueues)."""
        rows = self._query(
            f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE status IN ('queued', 'applying') ORDER BY seq"
        )
        return [_command(r) for r in rows]

    def count_pending(self) -> int:
        rows = self._query("SELECT COUNT(*) FROM commands WHERE status IN ('queued', 'applying')")
        return int(rows[0][0])

    def count_commands(self, *, kind: CommandKind, status: CommandStatus | None = None) -> int:
        """How many requests of one kind the log holds, optionally only those in one status."""
        if status is None:
            rows = self._query("SELECT COUNT(*) FROM commands WHERE kind = ?", (kind,))
        else:
            rows = self._query("SELECT COUNT(*) FROM commands WHERE kind = ? AND status = ?", (kind, status))
        return int(rows[0][0])

    def mark_applying(self, command_ids: Sequence[str]) -> None:
        with self._tx() as cur:
            for command_id in command_ids:
                self._exec(
                    cur,
                    "UPDATE commands SET status = 'applying' WHERE id = ? AND status = 'queued'",
                    (command_id,),
                )

    def finish(self, outcomes: Sequence[CommandOutcome], *, epoch: int | None = None) -> None:
        """Record outcomes that create no revision (failed or rejected requests)."""
        with self._tx() as cur:
            self._check_epoch(cur, epoch)
            self._write_outcomes(cur, outcomes, utc_now())

    def _write_outcomes(self, cursor: Any, outcomes: Sequence[CommandOutcome], now: str) -> None:
        for out in outcomes:
            applied_at = now if out.status in ("applied", "failed", "rejected") else None
            report = json.dumps(out.report) if out.report is not None else None
            error = out.error.model_dump_json() if out.error is not None else None
            self._exec(
                cursor,
                "UPDATE commands SET status = ?, revision = COALESCE(?, revision), "
                "report = COALESCE(?, report), error = ?, applied_at = COALESCE(?, applied_at), "
                "supersedes = COALESCE(?, supersedes), superseded_by = ? WHERE id = ?",
                (out.status, out.revision, report, error, applied_at, out.supersedes,
                 out.superseded_by if out.status == "superseded" else None, out.id),
            )

    # -- revisions ------------------------------------------------------------------------------
    def append_revision(
        self, revision: NewRevision, outcomes: Sequence[CommandOutcome], *, epoch: int | None = None
    ) -> RevisionRecord:
        """Append head + 1 and resolve its commands, atomically; refuses to apply a command twice."""
        with self._tx() as cur:
            self._check_epoch(cur, epoch)
            self._refuse_resolved(cur, revision)
            number = self._next_revision(cur)
            record = self._insert_revision(cur, revision, number=number)
            fixed = [_stamp(o, number) for o in outcomes]
            self._write_outcomes(cur, fixed, record.created_at)
            return record

    def _next_revision(self, cursor: Any) -> int:
        self._exec(cursor, "SELECT MAX(revision) FROM revisions")
        head = cursor.fetchone()[0]
        if head is None:
            raise RevisionNotFoundError("the log has no revision 0 yet: call init_lineage first")
        return int(head) + 1

    def _refuse_resolved(self, cursor: Any, revision: NewRevision) -> None:
        if revision.command_id is None:
            return
        self._exec(cursor, "SELECT status FROM commands WHERE id = ?", (revision.command_id,))
        row = cursor.fetchone()
        if row is None:
            raise NotFoundError(f"revision names unknown command {revision.command_id}")
        if row[0] not in PENDING_STATUSES:
            raise FencedWriterError(f"command {revision.command_id} was already resolved ({row[0]})")

    def _insert_revision(self, cursor: Any, rev: NewRevision, *, number: int) -> RevisionRecord:
        now = utc_now()
        params = (
            number, rev.kind, rev.base_revision, json.dumps(rev.edit_ids), json.dumps(rev.removed_ids),
            json.dumps(rev.artifacts), rev.checksum, rev.command_id, rev.actor, rev.editor,
            rev.editor_version, now,
        )
        marks = ",".join("?" for _ in params)
        self._exec(cursor, f"INSERT INTO revisions ({_REVISION_COLUMNS}) VALUES ({marks})", params)
        return RevisionRecord(revision=number, created_at=now, **rev.model_dump())

    def head(self) -> RevisionRecord:
        rows = self._query(f"SELECT {_REVISION_COLUMNS} FROM revisions ORDER BY revision DESC LIMIT 1")
        if not rows:
            raise RevisionNotFoundError("the log has no revisions yet (no worker has started on it)")
        return _revision(rows[0])

    def get_revision(self, revision: int) -> RevisionRecord:
        rows = self._query(f"SELECT {_REVISION_COLUMNS} FROM revisions WHERE revision = ?", (revision,))
        if not rows:
            raise RevisionNotFoundError(f"no revision {revision}", revision=revision)
        return _revision(rows[0])

    def list_revisions(
        self, *, limit: int = 50, cursor: int | None = None
    ) -> tuple[list[RevisionRecord], int | None]:
        text = f"SELECT {_REVISION_COLUMNS} FROM revisions"
        params: list[Any] = []
        if cursor is not None:
            text += " WHERE revision < ?"
            params.append(cursor)
        rows = self._query(text + " ORDER BY revision DESC LIMIT ?", [*params, limit + 1])
        items = [_revision(r) for r in rows[:limit]]
        return items, (items[-1].revision if len(rows) > limit else None)

    def revisions_between(self, first: int, last: int) -> list[RevisionRecord]:
        rows = self._query(
            f"SELECT {_REVISION_COLUMNS} FROM revisions "
            "WHERE revision >= ? AND revision <= ? ORDER BY revision",
            (first, last),
        )
        return [_revision(r) for r in rows]

    # -- snapshots ------------------------------------------------------------------------------
    def put_snapshot(self, revision: int, blob_sha: str) -> None:
        with self._tx() as cur:
            self._exec(cur, "DELETE FROM snapshots WHERE revision = ?", (revision,))
            self._exec(
                cur, "INSERT INTO snapshots (revision, blob, created_at) VALUES (?, ?, ?)",
                (revision, blob_sha, utc_now()),
            )

    def latest_snapshot(self, at_or_before: int) -> tuple[int, str] | None:
        rows = self._query(
            "SELECT revision, blob FROM snapshots WHERE revision <= ? ORDER BY revision DESC LIMIT 1",
            (at_or_before,),
        )
        return (int(rows[0][0]), str(rows[0][1])) if rows else None


def _stamp(outcome: CommandOutcome, number: int) -> CommandOutcome:
    """An applied outcome without a revision was applied by the revision being appended."""
    if outcome.status == "applied" and outcome.revision is None:
        return outcome.model_copy(update={"revision": number})
    return outcome


def _check_lineage(known: Lineage, wanted: Lineage) -> None:
    if (known.base_model, known.editor) != (wanted.base_model, wanted.editor):
        raise LogMismatchError(
            f"this edit log belongs to model {known.base_model!r} with editor {known.editor!r}, not "
            f"{wanted.base_model!r} with {wanted.editor!r}; use another data dir or database",
        )
    if known.base_checksum != wanted.base_checksum:
        raise LogMismatchError(
            f"the base weights differ from the ones this log was started on "
            f"(checksum {wanted.base_checksum[:12]} vs {known.base_checksum[:12]})"
        )


def _subject_columns(kind: str, body: dict[str, Any]) -> tuple[str | None, str, str]:
    """(subject, subject_key, fact_key) of a command: an edit's subject (given or inferred) and the
    keys it is found by; ('', '') when it has none."""
    prompt = body.get("prompt")
    if kind != "edit" or not isinstance(prompt, str):
        return None, "", ""
    raw = body.get("subject")
    subject = edit_subject(prompt, raw if isinstance(raw, str) else None)
    if not subject:
        return None, "", ""
    return subject, subject_key(subject), fact_key(prompt, subject) or ""


def _loads(value: Any) -> Any:
    return json.loads(value) if value is not None else None


def _command(row: tuple[Any, ...]) -> CommandRecord:
    error = _loads(row[7])
    return CommandRecord(
        seq=int(row[0]), id=row[1], kind=row[2], status=row[3], body=json.loads(row[4]),
        revision=row[5], report=_loads(row[6]), error=Problem.model_validate(error) if error else None,
        actor=row[8], idempotency_key=row[9], created_at=row[10], applied_at=row[11],
        subject=row[12], supersedes=row[13], superseded_by=row[14],
    )


def _revision(row: tuple[Any, ...]) -> RevisionRecord:
    return RevisionRecord(
        revision=int(row[0]), kind=row[1], base_revision=row[2], edit_ids=json.loads(row[3]),
        removed_ids=json.loads(row[4]), artifacts=json.loads(row[5]), checksum=row[6],
        command_id=row[7], actor=row[8], editor=row[9], editor_version=row[10], created_at=row[11],
    )
