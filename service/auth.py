"""Bearer-key auth. Roles, each including the ones before it: reader < editor < operator.

Keys come from two places: the edit log's database (`factpatch keys create`; names, roles and
sha256 digests, shared by every API process) and `FACTPATCH_API_KEYS` (for tests and compose).
Environment keys are compared digest to digest with `secrets.compare_digest`; database keys
are found by their digest. A found key is trusted for `key_cache_seconds`, so a revoked key
stops working within that time on every API process.

Auth is on as soon as any key exists (a revoked one counts, so revoking every key never opens
the service). With none, every request is allowed, recorded as `anonymous`, and `factpatch
api` / `serve` listen on loopback only (`listen_host`).
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from contract import logcontext
from contract.config import EnvKeyConfig, Role
from service.problems import AuthenticationError, PermissionDeniedError
from store.log import KeyStore, key_digest

ROLE_RANK: dict[str, int] = {"reader": 0, "editor": 1, "operator": 2}
ANONYMOUS_ACTOR = "anonymous"
_CACHE_LIMIT = 4096

bearer_scheme = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


@dataclass(frozen=True)
class Principal:
    """Who is calling. `actor` is what the log records: the key's name, or `anonymous`."""

    actor: str
    role: Role | None

    def allows(self, role: Role) -> bool:
        return self.role is None or ROLE_RANK[self.role] >= ROLE_RANK[role]


ANONYMOUS = Principal(actor=ANONYMOUS_ACTOR, role=None)


def _env_entries(api_keys: Mapping[str, Role | EnvKeyConfig]) -> list[tuple[str, Principal]]:
    entries = []
    for key, spec in api_keys.items():
        config = EnvKeyConfig(role=spec) if isinstance(spec, str) else spec
        digest = key_digest(key)
        entries.append((digest, Principal(actor=config.name or f"env-{digest[:8]}", role=config.role)))
    return entries


class KeyRing:
    """The keys of this deployment: environment keys, then the database's, with a short cache."""

    def __init__(
        self, api_keys: Mapping[str, Role | EnvKeyConfig], store: KeyStore | None = None, *, cache_seconds: float = 5.0
    ) -> None:
        self._env = _env_entries(api_keys)
        self._store, self._ttl = store, cache_seconds
        self._found: dict[str, tuple[float, Principal]] = {}
        self._stored_keys: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether any key exists (environment, or ever created in the database)."""
        return bool(self._env) or self._store_has_keys()

    def _store_has_keys(self) -> bool:
        if self._store is None:
            return False
        now = time.monotonic()
        with self._lock:
            cached = self._stored_keys
        if cached is not None and (cached[1] or now - cached[0] < self._ttl):
            return cached[1]  # once keys exist, auth stays on
        has = self._store.count_keys() > 0
        with self._lock:
            self._stored_keys = (now, has)
        return has

    def lookup(self, key: str) -> Principal | None:
        """The principal of `key`; every environment entry is compared, so timing does not tell which."""
        digest = key_digest(key)
        found: Principal | None = None
        for known, principal in self._env:
            if secrets.compare_digest(known, digest):
                found = principal
        return found or self._lookup_stored(digest)

    def _lookup_stored(self, digest: str) -> Principal | None:
        if self._store is None:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._found.get(digest)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        record = self._store.find_key(digest)
        if record is None:
            with self._lock:
                self._found.pop(digest, None)
            return None
        principal = Principal(actor=record.name, role=record.role)
        with self._lock:
            if len(self._found) >= _CACHE_LIMIT:
                self._found.clear()
            self._found[digest] = (now, principal)
        return principal


def authenticate(keyring: KeyRing, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if not keyring.enabled:
        return ANONYMOUS
    if credentials is None or not credentials.credentials:
        raise AuthenticationError("this route needs an API key: send `Authorization: Bearer <key>`")
    principal = keyring.lookup(credentials.credentials)
    if principal is None:
        raise AuthenticationError("unknown or revoked API key")
    return principal


def require_role(role: Role) -> Callable[..., Principal]:
    """A dependency that authenticates the caller, checks that the key has `role`, and puts the
    caller's name on the request (`request.state.principal`) and on its log lines (`actor`)."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        principal = authenticate(request.app.state.keyring, credentials)
        request.state.principal = principal
        logcontext.bind(actor=principal.actor)
        if not principal.allows(role):
            raise PermissionDeniedError(f"this route needs the {role} role; the key has {principal.role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def listen_host(asked: str, keyring: KeyRing) -> tuple[str, str]:
    """Where to listen, and the start-up line that says why: without any key, loopback only."""
    if keyring.enabled:
        return asked, "auth on: requests need an API key"
    if is_loopback(asked):
        return asked, ("auth off: no API keys, every request is allowed; create one with "
                       "`factpatch keys create --name NAME --role operator`")
    return "127.0.0.1", (f"auth off: no API keys, so listening on 127.0.0.1 only (not {asked}); create one with "
                         "`factpatch keys create --name NAME --role operator` and restart to listen on " + asked)

