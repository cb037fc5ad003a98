"""Following the log read-only: what replicas (and a standby writer) do to stay at the head.

For each new revision, in order: when it builds on the revision the model is at, apply its
stored artifacts and check the recorded checksum; when its base jumps (rollback, revert), or a
checksum does not match, restore it from snapshot + artifacts. The editor is never run and the
log is never written.
"""

from __future__ import annotations

import logging
import threading

from contract.errors import LogMismatchError
from contract.protocol import Lineage, RevisionRecord
from store.log import EditLog
from store.queue import Events
from workers.state import ModelState

logger = logging.getLogger(__name__)


def wait_for_lineage(log: EditLog, stop: threading.Event, every: float = 1.0) -> Lineage | None:
    """The log's lineage once a writer has started on it (None if stopped first)."""
    announced = False
    while not stop.is_set():
        lineage = log.lineage()
        if lineage is not None:
            return lineage
        if not announced:
            logger.info("the edit log is empty; waiting for a writer to start on it")
            announced = True
        stop.wait(every)
    return None


class Follower:
    def __init__(self, *, state: ModelState, log: EditLog) -> None:
        self.state = state
        self.log = log

    def initialise(self, lineage: Lineage) -> None:
        """Check that the resident base model is the log's, then restore the head revision."""
        with self.state.host.lock:
            self.state.editor.reset()
            checksum = self.state.compute_checksum()
            if (lineage.editor, lineage.base_checksum) != (self.state.editor.name, checksum):
                raise LogMismatchError(
                    f"this worker runs editor {self.state.editor.name!r} on weights {checksum[:12]}, but the "
                    f"log was started with {lineage.editor!r} on {lineage.base_checksum[:12]}"
                )
            self.state.restore_to(self.log.head().revision)
        logger.info("following the log from revision %d", self.state.revision)

    def catch_up(self) -> int:
        """Bring the model to the log's head; returns how many revisions were taken."""
        head = self.log.head().revision
        if head == self.state.revision:
            return 0
        with self.state.host.lock:
            records = self.log.revisions_between(self.state.revision + 1, head)
            for record in records:
                self._take(record)
        logger.info("caught up to revision %d", self.state.revision)
        return len(records)

    def _take(self, record: RevisionRecord) -> None:
        if record.base_revision == self.state.revision:
            for sha in record.artifacts:
                self.state.apply_artifact(sha)
            checksum = self.state.compute_checksum()
            if checksum == record.checksum:
                self.state.set_revision(record.revision, checksum)
                return
            logger.warning("revision %d: artifacts did not reproduce its checksum; restoring it",
                           record.revision)
        self.state.restore_to(record.revision)

    def run(self, stop: threading.Event, *, events: Events, every: float) -> None:
        """Catch up whenever something changed (or every `every` seconds) until `stop`."""
        while not stop.is_set():
            seen = events.generation()
            try:
                self.catch_up()
            except Exception:
                logger.exception("could not follow the log; retrying")
                stop.wait(every)
            events.wait(seen, every)
