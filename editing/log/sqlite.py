"""SQLite edit log: WAL journal, synchronous=FULL, blobs as content-addressed files."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from editing.log.base import BlobStore
from editing.log.blobs import FileBlobStore, MemoryBlobStore
from editing.log.keys import KEYS_DDL
from editing.log.sql import ADDED_COMMAND_COLUMNS, SqlEditLog

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    revision INTEGER,
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
    revision INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    base_revision INTEGER,
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
    revision INTEGER PRIMARY KEY,
    blob TEXT NOT NULL,
    created_at TEXT NOT NULL
);
"""
_SCHEMA = _TABLES + KEYS_DDL


class SqliteEditLog(SqlEditLog):
    """The embedded log. `path=":memory:"` gives a first-class in-memory log for tests."""

    def __init__(self, path: Path | str, *, blobs: BlobStore | None = None) -> None:
        memory = str(path) == ":memory:"
        if blobs is None:
            blobs = MemoryBlobStore() if memory else FileBlobStore(Path(path).parent / "objects")
        super().__init__(blobs=blobs)
        if not memory:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(_SCHEMA)
        self._migrate()

    def _begin(self, cursor: Any) -> None:
        cursor.execute("BEGIN IMMEDIATE")

    def _insert_command(self, cursor: Any, params: tuple[Any, ...]) -> int:
        cursor.execute(
            "INSERT INTO commands (id, kind, status, body, actor, idempotency_key, created_at, subject, "
            "subject_key, fact_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params,
        )
        return int(cursor.lastrowid)

    def _missing_columns(self, cursor: Any) -> list[str]:
        cursor.execute("PRAGMA table_info(commands)")
        present = {row[1] for row in cursor.fetchall()}
        return [c for c in ADDED_COMMAND_COLUMNS if c not in present]
