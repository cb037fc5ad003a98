"""The writer on the tiny model: revisions, batches, rollback, revert, replay, guard, restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contract.config import Settings
from contract.protocol import Command, EditSpec, GenerateJob, NewCommand, new_id
from editing.editors.base import EditBatch
from store.log import SqliteEditLog
from tests.helpers import PROMPTS, tweak
from tests.tiny import Rig, same, served


@pytest.fixture()
def rig(tiny_settings: Settings) -> Rig:
    return Rig(tiny_settings, SqliteEditLog(":memory:"))


def test_queued_edits_apply_as_one_revision_with_reports(rig: Rig) -> None:
    ids = [rig.edit(p, t, rephrases=[p + ","], locality=["Bananas are"]) for p, t in PROMPTS[:3]]
    rig.run()
    head = rig.log.head()
    assert (head.revision, head.kind, head.edit_ids) == (1, "edit", ids)
    for edit_id in ids:
        record = rig.get(edit_id)
        assert (record.status, record.revision) == ("applied", 1)
        report = record.report or {}
        assert report["target_logprob_after"] > report["target_logprob_before"]
        assert len(report["rephrases"]) == 1 and report["locality"][0]["prompt"] == "Bananas are"
    assert rig.runtime.state.checksum == head.checksum == rig.runtime.state.compute_checksum()


def test_batches_are_capped(tiny_settings: Settings) -> None:
    rig = Rig(tweak(tiny_settings, {"writer": {"max_batch_edits": 2}}), SqliteEditLog(":memory:"))
    for p, t in PROMPTS[:3]:
        rig.edit(p, t)
    rig.run()
    assert [len(r.edit_ids) for r in rig.log.revisions_between(1, 9)] == [2, 1]


def _three_revisions(rig: Rig) -> tuple[list[str], dict[int, dict[str, torch.Tensor]]]:
    states = {0: served(rig.host)}
    ids = []
    for i, (p, t) in enumerate(PROMPTS[:3], start=1):
        ids.append(rig.edit(p, t))
        rig.run()
        states[i] = served(rig.host)
    return ids, states


def test_rollback_restores_a_revision_bitwise_and_updates_statuses(rig: Rig) -> None:
    ids, states = _three_revisions(rig)
    rollback = rig.submit("rollback", {"to_revision": 1})
    rig.run()
    assert rig.get(rollback).status == "applied"
    assert same(served(rig.host), states[1])
    head = rig.log.head()
    assert (head.revision, head.kind, head.base_revision) == (4, "rollback", 1)
    assert head.checksum == rig.log.get_revision(1).checksum
    assert [rig.get(i).status for i in ids] == ["applied", "rolled_back", "rolled_back"]
    rig.submit("rollback", {"to_revision": 3})
    rig.run()
    assert same(served(rig.host), states[3])
    assert [(rig.get(i).status, rig.get(i).revision) for i in ids] == [("applied", 1), ("applied", 2), ("applied", 3)]


def test_rollback_to_the_base_gives_revision_zero(rig: Rig) -> None:
    _, states = _three_revisions(rig)
    rig.submit("rollback", {"to_revision": 0})
    rig.run()
    assert same(served(rig.host), states[0])
    assert rig.runtime.state.checksum == rig.log.get_revision(0).checksum


def test_revert_equals_the_history_without_the_edit(rig: Rig, tiny_settings: Settings) -> None:
    ids, _ = _three_revisions(rig)
    revert = rig.submit("rollback", {"edit_ids": [ids[1]]})
    rig.run()
    head = rig.log.head()
    assert rig.get(revert).status == "applied"
    assert (head.kind, head.base_revision, head.removed_ids, head.edit_ids) == ("revert", 1, [ids[1]], [ids[2]])
    assert [rig.get(i).status for i in ids] == ["applied", "rolled_back", "applied"]
    expected = Rig(tiny_settings, SqliteEditLog(":memory:"))
    for i in (0, 2):
        expected.edit(*PROMPTS[i])
        expected.run()
    assert same(served(rig.host), served(expected.host))


def test_reverting_twice_fails_without_touching_the_model(rig: Rig) -> None:
    ids, states = _three_revisions(rig)
    rig.submit("rollback", {"edit_ids": [ids[0]]})
    rig.run()
    live = served(rig.host)
    again = rig.submit("rollback", {"edit_ids": [ids[0]]})
    rig.run()
    record = rig.get(again)
    assert record.status == "failed" and record.error is not None
    assert record.error.code == "already_rolled_back" and record.error.status == 409
    assert same(served(rig.host), live)


def test_rollback_to_a_future_revision_fails_cleanly(rig: Rig) -> None:
    rig.edit(*PROMPTS[0])
    rig.run()
    live = served(rig.host)
    bad = rig.submit("rollback", {"to_revision": 99})
    rig.run()
    assert rig.get(bad).status == "failed"
    assert rig.get(bad).error.code == "revision_not_found"  # type: ignore[union-attr]
    assert same(served(rig.host), live) and rig.log.head().revision == 1


def test_replay_verifies_every_revision(rig: Rig) -> None:
    ids, states = _three_revisions(rig)
    rig.submit("rollback", {"to_revision": 1})
    rig.submit("rollback", {"edit_ids": [ids[0]]})
    rig.run()
    live, head = served(rig.host), rig.log.head()
    replay = rig.submit("replay", {})
    rig.run()
    record = rig.get(replay)
    assert record.status == "applied", record.error
    assert record.report == {"checked": head.revision + 1, "mismatches": [], "head": head.revision}
    new_head = rig.log.head()
    assert (new_head.kind, new_head.checksum) == ("replay", head.checksum)
    assert same(served(rig.host), live)


def test_replay_reports_a_tampered_checksum_and_keeps_the_model(rig: Rig) -> None:
    _three_revisions(rig)
    rig.log._conn.execute("UPDATE revisions SET checksum = 'forged' WHERE revision = 2")
    live = served(rig.host)
    replay = rig.submit("replay", {})
    rig.run()
    record = rig.get(replay)
    assert record.status == "failed" and record.error is not None
    assert record.error.code == "replay_mismatch"
    assert [m["revision"] for m in (record.report or {})["mismatches"]] == [2]
    assert same(served(rig.host), live) and rig.log.head().revision == 3


def test_guard_rejection_leaves_the_model_bitwise_unchanged(tiny_settings: Settings) -> None:
    settings = tweak(tiny_settings, {"guard": {"max_locality_changed": 0.0}})
    rig = Rig(settings, SqliteEditLog(":memory:"))
    live = served(rig.host)
    # On the tiny model an edit moves almost every greedy answer, so the strict guard refuses it.
    edit_id = rig.edit(*PROMPTS[0], locality=["The Eiffel Tower is located"])
    rig.run()
    record = rig.get(edit_id)
    assert record.status == "rejected" and record.error is not None
    assert record.error.code == "guard_failed" and record.error.status == 422
    assert same(served(rig.host), live) and rig.log.head().revision == 0


def test_non_finite_edit_is_rejected(tiny_settings: Settings) -> None:
    editors = {"ft": {**tiny_settings.editors["ft"], "lr": float("inf"), "norm_constraint": float("inf")}}
    rig = Rig(tweak(tiny_settings, {"editors": editors}), SqliteEditLog(":memory:"))
    live = served(rig.host)
    edit_id = rig.edit(*PROMPTS[0])
    rig.run()
    assert rig.get(edit_id).status == "rejected"
    assert rig.get(edit_id).error.code == "non_finite_delta"  # type: ignore[union-attr]
    assert same(served(rig.host), live)


def test_an_invalid_edit_fails_alone(tiny_settings: Settings) -> None:
    settings = tweak(tiny_settings, {"limits": {"max_prompt_tokens": 40}})
    rig = Rig(settings, SqliteEditLog(":memory:"))
    good = rig.edit(*PROMPTS[0])
    bad = rig.edit("word " * 20, "Rome")
    rig.run()
    assert rig.get(good).status == "applied"
    assert rig.get(bad).status == "failed"
    assert rig.get(bad).error.code == "prompt_too_long"  # type: ignore[union-attr]


def test_a_restarted_writer_rebuilds_the_head_from_the_log(tiny_settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    first = Rig(tiny_settings, SqliteEditLog(path))
    ids, states = _three_revisions(first)
    first.submit("rollback", {"to_revision": 2})
    first.run()
    second = Rig(tiny_settings, SqliteEditLog(path))
    assert second.runtime.state.revision == 4
    assert same(served(second.host), states[2])


def test_accepted_edits_survive_a_writer_that_never_ran(tiny_settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = SqliteEditLog(path)
    ids = []
    for p, t in PROMPTS[:2]:
        ids.append(new_id("ed"))
        log.accept([NewCommand(id=ids[-1], kind="edit", body=EditSpec(prompt=p, target=t).model_dump())])
    log.close()
    rig = Rig(tiny_settings, SqliteEditLog(path))  # start() resolves what the log holds
    assert [rig.get(i).status for i in ids] == ["applied", "applied"]
    assert rig.log.head().edit_ids == ids


def test_duplicate_deliveries_apply_once(rig: Rig) -> None:
    edit_id = rig.edit(*PROMPTS[0])
    rig.transport.commands.put(Command(kind="edit", id=edit_id))
    rig.runtime.writer.run(rig.runtime.stop_event, burst=True)
    assert rig.log.head().revision == 1
    assert rig.transport.commands.depth() == 0


def test_a_fenced_writer_cannot_commit(tiny_settings: Settings, tmp_path: Path) -> None:
    from contract.errors import FencedWriterError

    path = tmp_path / "log.sqlite3"
    old = Rig(tiny_settings, SqliteEditLog(path))
    Rig(tiny_settings, SqliteEditLog(path))  # a new writer takes a newer epoch
    live = served(old.host)
    old.edit(*PROMPTS[0])
    with pytest.raises(FencedWriterError):
        old.run()
    assert same(served(old.host), live)


def test_snapshots_are_taken_and_used(tiny_settings: Settings) -> None:
    rig = Rig(tweak(tiny_settings, {"log": {"snapshot_every": 2}}), SqliteEditLog(":memory:"))
    for p, t in PROMPTS:
        rig.edit(p, t)
        rig.run()
    assert rig.log.latest_snapshot(4) == (4, rig.log.latest_snapshot(4)[1])  # type: ignore[index]
    start, sha, todo = rig.runtime.state.chain(3)
    assert (start, [r.revision for r in todo]) == (2, [3]) and sha is not None


def test_queries_wait_for_min_revision(rig: Rig) -> None:
    rig.runtime.queries.max_wait = 0.2
    result = rig.runtime.queries.handle(GenerateJob(id="q1", prompt="Hi", max_new_tokens=2, min_revision=5))
    assert not result.ok and result.problem is not None
    assert (result.problem.code, result.problem.status) == ("revision_not_reached", 503)
    ok = rig.runtime.queries.handle(GenerateJob(id="q2", prompt="Hi", max_new_tokens=2, min_revision=0))
    assert ok.ok and ok.revision == 0 and isinstance(ok.data["text"], str)


def test_sequential_edit_answers_change(rig: Rig) -> None:
    prompt, target = PROMPTS[0]
    before = rig.host.generate(prompt, max_new_tokens=5)
    rig.edit(prompt, target)
    rig.run()
    assert rig.host.generate(prompt, max_new_tokens=5).startswith(" " + target)
    assert before != rig.host.generate(prompt, max_new_tokens=5)
    assert isinstance(EditBatch, type)
