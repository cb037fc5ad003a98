"""API keys in the edit log's database, on SQLite and PostgreSQL: digests only, unique names,
revocation, and every log object on one store seeing the same keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contract.errors import InvalidKeyNameError, KeyNameTakenError, KeyNotFoundError
from store.log import key_digest, new_secret
from store.log.sql import SqlEditLog
from tests.helpers import LogOpener


def test_a_key_is_stored_as_a_digest_and_found_by_it(edit_log: SqlEditLog) -> None:
    secret = new_secret()
    record = edit_log.create_key(name="ci-bot", role="editor", secret=secret)
    assert secret.startswith("fpk_") and len(secret) == 47
    assert record.digest == key_digest(secret) and record.hint == secret[:8]
    assert edit_log.find_key(key_digest(secret)) == record
    assert edit_log.find_key(key_digest(secret + "x")) is None
    assert [k.name for k in edit_log.list_keys()] == ["ci-bot"]
    assert edit_log.count_keys() == 1


def test_the_secret_never_reaches_the_database(tmp_path: Path) -> None:
    from store.log import SqliteEditLog

    path = tmp_path / "log.sqlite3"
    log = SqliteEditLog(path)
    secret = new_secret()
    log.create_key(name="ops", role="operator", secret=secret)
    log.close()
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    assert secret not in dump and secret[8:] not in dump
    assert key_digest(secret) in dump


def test_revoked_keys_stop_working_but_keep_their_name(edit_log: SqlEditLog) -> None:
    secret = new_secret()
    created = edit_log.create_key(name="alice", role="operator", secret=secret)
    revoked = edit_log.revoke_key("alice")
    assert revoked.id == created.id and revoked.revoked_at is not None and not revoked.active
    assert edit_log.find_key(key_digest(secret)) is None
    assert edit_log.revoke_key(created.id).revoked_at == revoked.revoked_at  # by id; no change
    assert edit_log.count_keys() == 1  # revoked keys still count: auth never switches off by revoking
    with pytest.raises(KeyNameTakenError):
        edit_log.create_key(name="alice", role="reader", secret=new_secret())


def test_bad_names_and_unknown_keys_are_refused(edit_log: SqlEditLog) -> None:
    for bad in ("", "-x", "has space", "x" * 65, "semi;colon"):
        with pytest.raises(InvalidKeyNameError):
            edit_log.create_key(name=bad, role="reader", secret=new_secret())
    with pytest.raises(KeyNotFoundError):
        edit_log.revoke_key("nobody")
    assert edit_log.count_keys() == 0


def test_every_log_object_on_one_store_sees_the_same_keys(shared_opener: LogOpener) -> None:
    first, second = shared_opener(), shared_opener()
    secret = new_secret()
    first.create_key(name="shared", role="reader", secret=secret)
    assert second.find_key(key_digest(secret)) is not None
    second.revoke_key("shared")
    assert first.find_key(key_digest(secret)) is None
