"""What every writer handler receives: the model state, the log and the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from contract import logcontext
from contract.config import Settings
from contract.protocol import CommandOutcome, NewRevision, RevisionRecord
from editing.editors.base import Editor
from editing.guard import StandingCache
from editing.host import ModelHost
from store.log import EditLog
from workers.state import ModelState


@dataclass
class WriterContext:
    state: ModelState
    log: EditLog
    settings: Settings
    worker_id: str
    epoch: int | None = None
    fence: Callable[[], None] | None = None  # raises FencedWriterError once the writer lease is lost
    standing_cache: StandingCache = field(default_factory=StandingCache)  # the guard's, per state

    @property
    def host(self) -> ModelHost:
        return self.state.host

    @property
    def editor(self) -> Editor:
        return self.state.editor

    def commit(self, revision: NewRevision, outcomes: list[CommandOutcome]) -> RevisionRecord:
        """Append a revision (the model already holds its state) and advance the state."""
        if self.fence is not None:
            self.fence()
        record = self.log.append_revision(revision, outcomes, epoch=self.epoch)
        self.state.set_revision(record.revision, record.checksum)
        logcontext.bind(revision=record.revision)
        if record.revision % self.settings.log.snapshot_every == 0:
            self.state.save_snapshot()
        return record

    def new_revision(self, *, command_id: str, **fields: object) -> NewRevision:
        """The next revision at the current state; its `actor` is the caller who sent `command_id`."""
        return NewRevision(
            checksum=self.state.compute_checksum(),
            actor=self.log.get_command(command_id).actor,
            editor=self.editor.name,
            editor_version=self.editor.version,
            command_id=command_id,
            **fields,
        )
