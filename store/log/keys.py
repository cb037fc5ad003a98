"""API keys in the edit log's database: names, roles, sha256 digests. Never the secret itself.

A key is `fpk_` + 43 url-safe characters (256 random bits), shown once by `factpatch keys
create`. The log stores its sha256 digest, a short hint (the first 8 characters, to tell keys
apart in `keys list`), the name that the log records as `actor`, and the role. A digest of a
256-bit random secret cannot be reversed or guessed, so a plain sha256 (no salt, no slow hash)
is enough and lets the API find a key with one indexed lookup.

Names stay unique after a key is revoked, so an `actor` in the history always names one key.
The same SQL runs on SQLite and PostgreSQL (`SqlKeyStore` is mixed into `SqlEditLog`).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from contract.errors import InvalidKeyNameError, KeyNameTakenError, KeyNotFoundError
from contract.protocol import new_id, utc_now

KeyRole = Literal["reader", "editor", "operator"]
SECRET_PREFIX = "fpk_"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

KEYS_DDL = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""

_COLUMNS = "id, name, role, digest, hint, created_at, revoked_at"


class ApiKeyRecord(BaseModel):
    """A stored key: everything but the secret."""

    id: str
    name: str
    role: KeyRole
    digest: str
    hint: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_secret() -> str:
    """A fresh API key: `fpk_` + 256 random bits, url-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def key_digest(secret: str) -> str:
    """What the database holds instead of the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_key_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidKeyNameError(
            f"key name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
            field="name",
        )
    return name


class KeyStore(Protocol):
    """The keys every API process of a deployment shares."""

    def create_key(self, *, name: str, role: KeyRole, secret: str) -> ApiKeyRecord: ...

    def list_keys(self) -> list[ApiKeyRecord]: ...

    def revoke_key(self, name_or_id: str) -> ApiKeyRecord: ...

    def find_key(self, digest: str) -> ApiKeyRecord | None: ...

    def count_keys(self) -> int: ...


class SqlKeyStore:
    """The key table over `SqlEditLog`'s connection (its `_tx` and `_query`)."""

    def _tx(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _exec(self, cursor: Any, text: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def create_key(self, *, name: str, role: KeyRole, secret: str) -> ApiKeyRecord:
        """Store a new key's digest under a unique name."""
        record = ApiKeyRecord(id=new_id("key"), name=check_key_name(name), role=role, digest=key_digest(secret),
                              hint=secret[:8], created_at=utc_now())
        with self._tx() as cur:
            self._exec(cur, "SELECT 1 FROM api_keys WHERE name = ?", (name,))
            if cur.fetchone() is not None:
                raise KeyNameTakenError(f"a key named {name!r} exists (names of revoked keys stay taken)",
                                        field="name")
            values = tuple(record.model_dump().values())
            self._exec(cur, f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", values)
        return record

    def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        return list(_records(self._query(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")))

    def revoke_key(self, name_or_id: str) -> ApiKeyRecord:
        """Revoke by name or id; revoking a revoked key changes nothing."""
        with self._tx() as cur:
            self._exec(cur, f"SELECT {_COLUMNS} FROM api_keys WHERE name = ? OR id = ?", (name_or_id, name_or_id))
            row = cur.fetchone()
            if row is None:
                raise KeyNotFoundError(f"no key named {name_or_id!r}", field="name")
            record = next(_records([row]))
            if record.revoked_at is None:
                record.revoked_at = utc_now()
                self._exec(cur, "UPDATE api_keys SET revoked_at = ? WHERE id = ?", (record.revoked_at, record.id))
        return record

    def find_key(self, digest: str) -> ApiKeyRecord | None:
        """The active key with this digest."""
        rows = self._query(f"SELECT {_COLUMNS} FROM api_keys WHERE digest = ? AND revoked_at IS NULL", (digest,))
        return next(_records(rows), None)

    def count_keys(self) -> int:
        """Keys ever created, revoked ones included (so revoking every key never turns auth off)."""
        return int(self._query("SELECT COUNT(*) FROM api_keys")[0][0])


def _records(rows: Sequence[tuple[Any, ...]]) -> Iterator[ApiKeyRecord]:
    for row in rows:
        yield ApiKeyRecord(id=row[0], name=row[1], role=row[2], digest=row[3], hint=row[4], created_at=row[5],
                           revoked_at=row[6])
