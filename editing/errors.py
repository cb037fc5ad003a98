"""The one exception tree of factpatch. No torch here: the service imports it.

```
EditingError
 ├─ InvalidEditError        422   UnknownEditorError, TargetNotFoundError, PromptTooLongError,
 │                                InvalidDatasetError, CheckpointMismatchError
 ├─ NotFoundError           404   EditNotFoundError, RollbackNotFoundError, RevisionNotFoundError
 ├─ ConflictError           409   IdempotencyKeyReusedError, AlreadyRolledBackError,
 │                                LogMismatchError, FencedWriterError
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


class NotFoundError(EditingError):
    code = "not_found"


class EditNotFoundError(NotFoundError):
    code = "edit_not_found"


class RollbackNotFoundError(NotFoundError):
    code = "rollback_not_found"


class RevisionNotFoundError(NotFoundError):
    code = "revision_not_found"


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
