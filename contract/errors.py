"""The one exception tree of factpatch. No torch here: the service imports it.

```
EditingError
 ├─ InvalidEditError        422   UnknownEditorError, TargetNotFoundError, PromptTooLongError,
 │                                InvalidDatasetError, CheckpointMismatchError, InvalidKeyNameError
 ├─ InvalidQueryError       422   a query the model cannot answer as asked
 ├─ NotFoundError           404   EditNotFoundError, RollbackNotFoundError, RevisionNotFoundError,
 │                                KeyNotFoundError
 ├─ ConflictError           409   IdempotencyKeyReusedError, AlreadyRolledBackError,
 │                                LogMismatchError, FencedWriterError, KeyNameTakenError
 ├─ EditRejectedError       422   NonFiniteDeltaError, GuardFailedError
 ├─ UnavailableError        503   WorkerUnavailableError, RevisionNotReachedError, QueueFullError
 │                                (all with Retry-After)
 ├─ JobTimeoutError         504
 └─ ReplayMismatchError     500   a recorded checksum was not reproduced
```

Every class carries a stable `code` (snake case) that the service turns into a problem type,
and optional `extra` fields that travel in the problem document.
"""

from __future__ import annotations

from typing import Any

from contract.protocol import Problem


class EditingError(Exception):
    """Base of every error factpatch raises on purpose."""

    code = "editing_error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = extra


class InvalidEditError(EditingError):
    code = "invalid_edit"


class UnknownEditorError(InvalidEditError):
    code = "unknown_editor"


class TargetNotFoundError(InvalidEditError):
    code = "target_not_found"


class PromptTooLongError(InvalidEditError):
    code = "prompt_too_long"


class InvalidDatasetError(InvalidEditError):
    code = "invalid_dataset"


class CheckpointMismatchError(InvalidEditError):
    code = "checkpoint_mismatch"


class InvalidKeyNameError(InvalidEditError):
    code = "invalid_key_name"


class InvalidQueryError(EditingError):
    """A query the model cannot answer as asked (e.g. chat messages for a model without a chat template)."""

    code = "invalid_query"


class NotFoundError(EditingError):
    code = "not_found"


class EditNotFoundError(NotFoundError):
    code = "edit_not_found"


class RollbackNotFoundError(NotFoundError):
    code = "rollback_not_found"


class RevisionNotFoundError(NotFoundError):
    code = "revision_not_found"


class KeyNotFoundError(NotFoundError):
    code = "key_not_found"


class ConflictError(EditingError):
    code = "conflict"


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"


class AlreadyRolledBackError(ConflictError):
    code = "already_rolled_back"


class LogMismatchError(ConflictError):
    """The edit log belongs to another base model or editor than the one configured."""

    code = "log_mismatch"


class FencedWriterError(ConflictError):
    """A writer whose lease was taken over tried to commit."""

    code = "fenced_writer"


class KeyNameTakenError(ConflictError):
    """An API key (active or revoked) already has this name."""

    code = "key_name_taken"


class EditRejectedError(EditingError):
    code = "edit_rejected"


class NonFiniteDeltaError(EditRejectedError):
    code = "non_finite_delta"


class GuardFailedError(EditRejectedError):
    code = "guard_failed"


class UnavailableError(EditingError):
    code = "unavailable"
    retry_after = 1


class WorkerUnavailableError(UnavailableError):
    code = "worker_unavailable"


class RevisionNotReachedError(UnavailableError):
    code = "revision_not_reached"


class QueueFullError(UnavailableError):
    code = "queue_full"


class JobTimeoutError(EditingError):
    code = "job_timeout"


class ReplayMismatchError(EditingError):
    code = "replay_mismatch"


# (class, HTTP status, title); the most specific class in an exception's MRO wins.
STATUS_TABLE: tuple[tuple[type[EditingError], int, str], ...] = (
    (PromptTooLongError, 422, "Prompt too long"),
    (UnknownEditorError, 422, "Unknown editor"),
    (TargetNotFoundError, 422, "Target module not found"),
    (InvalidDatasetError, 422, "Invalid dataset"),
    (CheckpointMismatchError, 422, "Checkpoint does not match the model"),
    (InvalidKeyNameError, 422, "Invalid key name"),
    (InvalidEditError, 422, "Invalid edit"),
    (InvalidQueryError, 422, "Invalid query"),
    (EditNotFoundError, 404, "Edit not found"),
    (RollbackNotFoundError, 404, "Rollback not found"),
    (RevisionNotFoundError, 404, "Revision not found"),
    (KeyNotFoundError, 404, "API key not found"),
    (NotFoundError, 404, "Not found"),
    (IdempotencyKeyReusedError, 409, "Idempotency key reused"),
    (AlreadyRolledBackError, 409, "Already rolled back"),
    (LogMismatchError, 409, "Edit log mismatch"),
    (FencedWriterError, 409, "Writer fenced"),
    (KeyNameTakenError, 409, "Key name taken"),
    (ConflictError, 409, "Conflict"),
    (NonFiniteDeltaError, 422, "Non-finite edit"),
    (GuardFailedError, 422, "Edit rejected by the guard"),
    (EditRejectedError, 422, "Edit rejected"),
    (RevisionNotReachedError, 503, "Revision not reached"),
    (QueueFullError, 503, "Queue full"),
    (WorkerUnavailableError, 503, "No worker available"),
    (UnavailableError, 503, "Unavailable"),
    (JobTimeoutError, 504, "Job timed out"),
    (ReplayMismatchError, 500, "Replay mismatch"),
)


def status_and_title(exc: BaseException) -> tuple[int, str]:
    """HTTP status and title of an exception (500 for anything not an EditingError)."""
    table: dict[type, tuple[int, str]] = {cls: (status, title) for cls, status, title in STATUS_TABLE}
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return 500, "Internal error"


def to_problem(exc: BaseException) -> Problem:
    """The problem document a worker stores for a failed request (no stack traces)."""
    status, title = status_and_title(exc)
    if isinstance(exc, EditingError):
        slug = exc.code.replace("_", "-")
        return Problem(type=f"/problems/{slug}", title=title, status=status, detail=exc.detail, code=exc.code,
                       **_jsonable(exc.extra))
    return Problem(type="/problems/internal-error", title=title, status=500,
                   detail=f"the worker failed ({type(exc).__name__}); see its log", code="internal_error")


def _jsonable(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if isinstance(v, str | int | float | bool | list | dict | None)}
