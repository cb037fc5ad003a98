"""Interfaces of the edit log and its blob store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from contract.protocol import (
    CommandKind,
    CommandOutcome,
    CommandRecord,
    CommandStatus,
    Lineage,
    NewCommand,
    NewRevision,
    RevisionRecord,
)
from store.log.keys import KeyStore


class BlobStore(Protocol):
    """Content-addressed bytes: `put` returns the sha256 and is durable when it returns."""

    def put(self, data: bytes) -> str: ...

    def get(self, sha: str) -> bytes: ...

    def has(self, sha: str) -> bool: ...


class EditLog(KeyStore, Protocol):
    """The source of truth of a factpatch deployment, and the API keys of its API processes.

    Accepted requests are durable when `accept` returns. A revision and the outcomes of the
    commands it resolves are committed in one transaction by `append_revision`.
    """

    # lineage and fencing
    def lineage(self) -> Lineage | None: ...

    def init_lineage(self, *, lineage: Lineage, base: NewRevision) -> RevisionRecord: ...

    def acquire_epoch(self) -> int: ...

    def current_epoch(self) -> int: ...

    # commands
    def accept(
        self,
        commands: Sequence[NewCommand],
        *,
        idempotency_key: str | None = None,
        body_hash: str | None = None,
    ) -> tuple[list[CommandRecord], bool]: ...

    def get_command(self, command_id: str) -> CommandRecord: ...

    def get_commands(self, command_ids: Sequence[str]) -> list[CommandRecord]: ...

    def list_commands(
        self,
        *,
        kind: CommandKind,
        status: CommandStatus | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[CommandRecord], int | None]: ...

    def list_subject_edits(
        self, subject: str, *, status: CommandStatus | None = None, limit: int = 50, cursor: int | None = None
    ) -> tuple[list[CommandRecord], int | None]: ...

    def applied_same_fact(self, command_id: str) -> list[CommandRecord]: ...

    def superseding(self, command_ids: Sequence[str]) -> list[tuple[str, str]]: ...

    def pending_commands(self) -> list[CommandRecord]: ...

    def count_pending(self) -> int: ...

    def count_commands(self, *, kind: CommandKind, status: CommandStatus | None = None) -> int: ...

    def mark_applying(self, command_ids: Sequence[str]) -> None: ...

    def finish(self, outcomes: Sequence[CommandOutcome], *, epoch: int | None = None) -> None: ...

    # revisions
    def append_revision(
        self, revision: NewRevision, outcomes: Sequence[CommandOutcome], *, epoch: int | None = None
    ) -> RevisionRecord: ...

    def head(self) -> RevisionRecord: ...

    def get_revision(self, revision: int) -> RevisionRecord: ...

    def list_revisions(
        self, *, limit: int = 50, cursor: int | None = None
    ) -> tuple[list[RevisionRecord], int | None]: ...

    def revisions_between(self, first: int, last: int) -> list[RevisionRecord]: ...

    # snapshots and blobs
    def put_snapshot(self, revision: int, blob_sha: str) -> None: ...

    def latest_snapshot(self, at_or_before: int) -> tuple[int, str] | None: ...

    @property
    def blobs(self) -> BlobStore: ...

    def close(self) -> None: ...
