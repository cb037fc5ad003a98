"""Pick the edit log a configuration asks for."""

from __future__ import annotations

from contract.config import Settings
from store.log.base import EditLog
from store.log.sqlite import SqliteEditLog


def open_log(settings: Settings) -> EditLog:
    """SQLite under the data dir by default; `postgresql://` URLs use the Postgres log."""
    if settings.uses_postgres():
        from store.log.postgres import PostgresEditLog

        assert settings.database_url is not None
        return PostgresEditLog(settings.database_url)
    return SqliteEditLog(settings.sqlite_path())
