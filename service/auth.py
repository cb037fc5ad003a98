"""Optional bearer-key auth. Roles, each including the ones before it: reader < editor < operator.

Keys are kept as sha256 digests and compared with `secrets.compare_digest`. With no keys
configured every request is allowed and no actor is recorded.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from editing.config import Role
from service.problems import AuthenticationError, PermissionDeniedError

ROLE_RANK: dict[str, int] = {"reader": 0, "editor": 1, "operator": 2}

bearer_scheme = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


@dataclass(frozen=True)
class Principal:
    """Who is calling. `actor` is what the log records (None when auth is off)."""

    actor: str | None
    role: Role | None

    def allows(self, role: Role) -> bool:
        return self.role is None or ROLE_RANK[self.role] >= ROLE_RANK[role]


ANONYMOUS = Principal(actor=None, role=None)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """The configured keys, by digest."""

    def __init__(self, api_keys: Mapping[str, Role]) -> None:
        self._entries = [(_digest(key), role) for key, role in api_keys.items()]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def lookup(self, key: str) -> Principal | None:
        """The principal of `key`; every entry is compared, so timing does not reveal which matched."""
        digest = _digest(key)
        found: Principal | None = None
        for known, role in self._entries:
            if secrets.compare_digest(known, digest):
                found = Principal(actor=f"key:{digest[:8]}", role=role)
        return found


def authenticate(keyring: KeyRing, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    if not keyring.enabled:
        return ANONYMOUS
    if credentials is None or not credentials.credentials:
        raise AuthenticationError("this route needs an API key: send `Authorization: Bearer <key>`")
    principal = keyring.lookup(credentials.credentials)
    if principal is None:
        raise AuthenticationError("unknown API key")
    return principal


def require_role(role: Role) -> Callable[..., Principal]:
    """A dependency that authenticates the caller and checks that the key has `role`."""

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        principal = authenticate(request.app.state.keyring, credentials)
        if not principal.allows(role):
            raise PermissionDeniedError(f"this route needs the {role} role; the key has {principal.role}")
        return principal

    dependency.__name__ = f"require_{role}"
    return dependency
