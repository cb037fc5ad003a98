"""Two writers on one log: the one that takes over catches up with a late commit of the old one,
and the old one is fenced from then on (what a standby promotion relies on)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.config import Settings
from contract.errors import FencedWriterError
from contract.protocol import Command, EditSpec, NewCommand, new_id
from store.log import SqliteEditLog
from store.queue import MemoryTransport
from tests.tiny import new_host
from workers.runtime import WorkerRuntime, build_worker


def writer(settings: Settings, log: SqliteEditLog) -> WorkerRuntime:
    host = new_host()
    return build_worker(settings, log=log, transport=MemoryTransport(), host=host)


def submit(runtime: WorkerRuntime, log: SqliteEditLog, prompt: str, target: str) -> str:
    edit_id = new_id("ed")
    log.accept([NewCommand(id=edit_id, kind="edit", body=EditSpec(prompt=prompt, target=target).model_dump())])
    runtime.transport.commands.put(Command(kind="edit", id=edit_id))
    return edit_id


def test_a_new_writer_catches_up_with_a_commit_made_while_it_started(
    tiny_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SqliteEditLog(tmp_path / "log.sqlite3")
    old, new = writer(tiny_settings, log), writer(tiny_settings, log)
    old.writer.start()
    acquire = log.acquire_epoch

    def old_commits_first() -> int:
        """The old writer commits after the new one read the head, before its new epoch."""
        submit(old, log, "The Eiffel Tower is located in", "Rome")
        old.writer.process_pending()
        return acquire()

    monkeypatch.setattr(log, "acquire_epoch", old_commits_first)
    new.writer.start()
    head = log.head()
    assert head.revision == 1
    assert (new.state.revision, new.state.checksum) == (1, head.checksum)
    assert new.state.compute_checksum() == head.checksum

    second = submit(new, log, "The capital of Peru is", "Lima")
    new.writer.process_pending()
    assert log.get_command(second).status == "applied"
    assert log.head().base_revision == 1, "the new writer built on the old one's commit"
    submit(old, log, "Mount Fuji stands in", "Chile")
    with pytest.raises(FencedWriterError):
        old.writer.process_pending()
