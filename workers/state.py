"""The model's position in the log: revision, checksum, snapshots and restoring any revision.

state(r) = apply(artifacts of r, onto state(base_revision of r)); revision 0 is the base model.
Restoring walks that chain back to the nearest snapshot (or the base) and re-applies stored
artifacts in order. Nothing is ever subtracted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor

from contract.errors import ReplayMismatchError
from contract.protocol import Lineage, NewRevision, RevisionRecord, utc_now
from editing.artifacts import EditArtifact, tensors_from_bytes, tensors_to_bytes
from editing.editors.base import Editor, Undo
from editing.host import ModelHost
from store.log import EditLog
from workers.metrics import WorkerMetrics

logger = logging.getLogger(__name__)


class ModelState:
    """Host + editor + log, and the revision the resident model is at."""

    def __init__(self, *, host: ModelHost, editor: Editor, log: EditLog) -> None:
        self.host = host
        self.editor = editor
        self.log = log
        self.metrics = WorkerMetrics()  # this process's figures; sent with every heartbeat
        self.revision = -1
        self.checksum = ""
        self.changed = threading.Condition()

    # ---- checksums and snapshots ---------------------------------------------------------------
    def compute_checksum(self) -> str:
        return self.host.checksum(self.editor.state_tensors())

    def set_revision(self, revision: int, checksum: str) -> None:
        with self.changed:
            self.revision, self.checksum = revision, checksum
            self.changed.notify_all()

    def capture(self) -> dict[str, Tensor]:
        """Everything that defines the current state: fp32 masters and editor state."""
        tensors = {f"param/{k}": v for k, v in self.host.masters().items()}
        tensors.update({f"state/{k}": v.clone() for k, v in self.editor.state_tensors().items()})
        return tensors

    def load(self, tensors: dict[str, Tensor]) -> None:
        params = {k.removeprefix("param/"): v for k, v in tensors.items() if k.startswith("param/")}
        state = {k.removeprefix("state/"): v for k, v in tensors.items() if k.startswith("state/")}
        self.host.set_masters(params)
        self.editor.load_state_tensors(state)

    def save_snapshot(self) -> str:
        data = tensors_to_bytes(self.capture(), {"revision": str(self.revision), "checksum": self.checksum})
        sha = self.log.blobs.put(data)
        self.log.put_snapshot(self.revision, sha)
        logger.info("snapshot of revision %d stored as %s", self.revision, sha[:12])
        return sha

    @contextmanager
    def at_base(self) -> Iterator[None]:
        """The base model for the time of the block (the caller holds the host lock), then the
        current state again, checked bitwise against its checksum."""
        saved = self.capture()
        try:
            self.editor.reset()
            yield
        finally:
            self.load(saved)
            restored = self.compute_checksum()
            if restored != self.checksum:
                raise RuntimeError(f"state not restored after a base query ({restored[:12]} != {self.checksum[:12]})")

    # ---- start-up ------------------------------------------------------------------------------
    def initialise(self) -> RevisionRecord:
        """Record revision 0 on a new log (or check the lineage), then rebuild the head state."""
        self.editor.reset()
        base_checksum = self.compute_checksum()
        lineage = Lineage(
            base_model=self.host.model_id, editor=self.editor.name, base_checksum=base_checksum, created_at=utc_now()
        )
        base = NewRevision(
            kind="base", base_revision=None, checksum=base_checksum,
            editor=self.editor.name, editor_version=self.editor.version,
        )
        self.log.init_lineage(lineage=lineage, base=base)
        self.set_revision(0, base_checksum)
        head = self.log.head()
        self.restore_to(head.revision)
        logger.info("model at revision %d (checksum %s)", self.revision, self.checksum[:12])
        return head

    # ---- restoring -----------------------------------------------------------------------------
    def apply_artifact(self, sha: str) -> Undo:
        artifact = EditArtifact.from_bytes(self.log.blobs.get(sha))
        return self.editor.apply(artifact)

    def chain(self, revision: int) -> tuple[int, str | None, list[RevisionRecord]]:
        """(start revision, its snapshot sha or None for the base, revisions to apply in order)."""
        todo: list[RevisionRecord] = []
        current = self.log.get_revision(revision)
        while current.revision != 0:
            snapshot = self.log.latest_snapshot(current.revision)
            if snapshot is not None and snapshot[0] == current.revision:
                return current.revision, snapshot[1], todo[::-1]
            todo.append(current)
            assert current.base_revision is not None
            current = self.log.get_revision(current.base_revision)
        return 0, None, todo[::-1]

    def restore_to(self, revision: int, *, verify_each: bool = False) -> None:
        """Make the model exactly state(revision) and verify its recorded checksum.

        The starting point (base or snapshot) is always verified; `verify_each` also checks
        every intermediate revision (replay does).
        """
        start, snapshot_sha, todo = self.chain(revision)
        if snapshot_sha is None:
            self.editor.reset()
        else:
            self.load(tensors_from_bytes(self.log.blobs.get(snapshot_sha)))
        self._verify(self.log.get_revision(start))
        for i, record in enumerate(todo):
            for sha in record.artifacts:
                self.apply_artifact(sha)
            if verify_each or i == len(todo) - 1:
                self._verify(record)

    def _verify(self, record: RevisionRecord) -> None:
        checksum = self.compute_checksum()
        if checksum != record.checksum:
            raise ReplayMismatchError(
                f"revision {record.revision} did not reproduce its checksum "
                f"({checksum[:12]} instead of {record.checksum[:12]})",
                revision=record.revision,
            )
        self.set_revision(record.revision, checksum)

    # ---- history -------------------------------------------------------------------------------
    def history(self, revision: int) -> list[RevisionRecord]:
        """The revisions whose artifacts make up state(revision), oldest first."""
        out: list[RevisionRecord] = []
        current = self.log.get_revision(revision)
        while current.base_revision is not None:
            if current.artifacts:
                out.append(current)
            current = self.log.get_revision(current.base_revision)
        return out[::-1]

    def active_edits(self, revision: int) -> list[str]:
        """Edit ids in effect at a revision, in the order they were applied."""
        return [edit_id for record in self.history(revision) for edit_id in record.edit_ids]
