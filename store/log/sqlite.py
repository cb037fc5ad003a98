"""SQLite edit log: WAL journal, synchronous=FULL, blobs as content-addressed files."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from store.log.base import BlobStore
from store.log.blobs import FileBlobStore, MemoryBlobStore
from store.log.keys import KEYS_DDL
from store.log.sql import ADDED_COMMAND_COLUMNS, SqlEditLog, tables_ddl

_TABLES = tables_ddl(serial="INTEGER PRIMARY KEY AUTOINCREMENT", integer="INTEGER")
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
