"""Superseding an edited fact on the tiny model: one revision reverts the earlier edit and applies the
new one; rolling back past it restores the earlier one bit for bit. SQLite and PostgreSQL logs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contract.config import Settings
from store.log import SqliteEditLog
from store.log.sql import SqlEditLog
from tests.helpers import PROMPTS, tweak
from tests.tiny import Rig, same, served

PROMPT = PROMPTS[0][0]  # "The Eiffel Tower is located in"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def edit_log(request: pytest.FixtureRequest) -> Iterator[SqlEditLog]:
    if request.param == "sqlite":
        log: SqlEditLog = SqliteEditLog(":memory:")
    else:
        from store.log.postgres import PostgresEditLog

        log = PostgresEditLog(request.getfixturevalue("postgres_url"),
                              schema=request.getfixturevalue("postgres_schema"))
    yield log
    log.close()


@pytest.fixture()
def rig(tiny_settings: Settings, edit_log: SqlEditLog) -> Rig:
    return Rig(tiny_settings, edit_log)


def answer(rig: Rig, prompt: str) -> str:
    return rig.host.generate(prompt, max_new_tokens=8)  # byte tokens


def test_the_same_fact_again_replaces_the_earlier_edit_in_one_revision(rig: Rig, tiny_settings: Settings) -> None:
    first = rig.edit(PROMPT, "Rome")
    rig.run()
    other = rig.edit(*PROMPTS[1])
    rig.run()
    second = rig.edit(PROMPT, "Berlin", subject="eiffel tower")  # the first one's subject was inferred
    rig.run()
    head = rig.log.head()
    assert (head.revision, head.kind, head.base_revision) == (3, "supersede", 0)
    assert (head.edit_ids, head.removed_ids, len(head.artifacts)) == ([other, second], [first], 2)
    old, new = rig.get(first), rig.get(second)
    assert (old.status, old.superseded_by, old.revision) == ("superseded", second, 1)
    assert (new.status, new.supersedes, new.revision) == ("applied", first, 3)
    assert (rig.get(other).status, rig.get(other).revision) == ("applied", 3)
    assert answer(rig, PROMPT).startswith(" Berlin")
    # Exactly the model that never saw the first edit (the later edit re-run, then the new one).
    expected = Rig(tiny_settings, SqliteEditLog(":memory:"))
    for prompt, target in (PROMPTS[1], (PROMPT, "Berlin")):
        expected.edit(prompt, target)
        expected.run()
    assert same(served(rig.host), served(expected.host))


def test_rolling_back_past_the_supersede_restores_the_earlier_edit_bit_for_bit(rig: Rig) -> None:
    at_base = rig.host.score(PROMPT, ["Berlin"])[0][0]
    first = rig.edit(PROMPT, "Rome")
    rig.run()
    at_first = served(rig.host)
    second = rig.edit(PROMPT, "Berlin")
    rig.run()
    assert rig.log.head().kind == "supersede" and answer(rig, PROMPT).startswith(" Berlin")
    # Measured (and guarded) from the history without the replaced edit: here, the base model.
    assert rig.get(second).report["target_logprob_before"] == pytest.approx(at_base, abs=1e-5)  # type: ignore[index]
    at_second = served(rig.host)
    rig.submit("rollback", {"to_revision": 1})
    rig.run()
    assert same(served(rig.host), at_first)
    assert rig.runtime.state.compute_checksum() == rig.log.get_revision(1).checksum == rig.log.head().checksum
    assert answer(rig, PROMPT).startswith(" Rome")
    old, new = rig.get(first), rig.get(second)
    assert (old.status, old.superseded_by, old.revision) == ("applied", None, 1)
    assert (new.status, new.supersedes) == ("rolled_back", first)
    rig.submit("rollback", {"to_revision": 2})  # forward again: superseded again, by the same edit
    rig.run()
    assert same(served(rig.host), at_second)
    assert (rig.get(first).status, rig.get(first).superseded_by) == ("superseded", second)
    assert (rig.get(second).status, rig.get(second).revision) == ("applied", 2)
    replay = rig.submit("replay", {})
    rig.run()
    assert rig.get(replay).status == "applied" and rig.get(replay).report["mismatches"] == []  # type: ignore[index]


def test_an_edit_names_the_edit_it_supersedes(rig: Rig) -> None:
    first = rig.edit(PROMPT, "Rome")
    rig.run()
    second = rig.edit("Where is the Eiffel Tower? In", "Berlin", supersedes=first)
    rig.run()
    assert (rig.get(first).status, rig.get(first).superseded_by) == ("superseded", second)
    assert rig.log.head().removed_ids == [first]
    live, head = served(rig.host), rig.log.head().revision
    again = rig.edit(PROMPTS[2][0], PROMPTS[2][1], supersedes=first)  # already superseded
    unknown = rig.edit(PROMPTS[2][0], PROMPTS[2][1], supersedes="ed_NOPE")
    rig.run()
    for edit_id, code in ((again, "conflict"), (unknown, "edit_not_found")):
        record = rig.get(edit_id)
        assert record.status == "failed" and record.error is not None and record.error.code == code
        assert record.error.model_dump()["field"] == "supersedes"
    assert "superseded" in (rig.get(again).error.detail or "")  # type: ignore[union-attr]
    assert same(served(rig.host), live) and rig.log.head().revision == head


def test_two_edits_of_one_fact_in_one_group_make_two_revisions(rig: Rig) -> None:
    first, second = rig.edit(PROMPT, "Rome"), rig.edit(PROMPT, "Berlin")
    third = rig.edit(*PROMPTS[1])
    rig.run()
    kinds = [(r.kind, r.edit_ids, r.removed_ids) for r in rig.log.revisions_between(1, 9)]
    assert kinds == [("edit", [first], []), ("supersede", [second, third], [first])]
    assert answer(rig, PROMPT).startswith(" Berlin")


def test_a_refused_supersede_leaves_the_earlier_edit_in_place(tiny_settings: Settings, edit_log: SqlEditLog) -> None:
    strict = tweak(tiny_settings, {"guard": {"max_locality_changed": 0.0, "neighbours": 0}})
    rig = Rig(strict, edit_log)
    first = rig.edit(*PROMPTS[1])  # no locality prompt: nothing for the strict guard to refuse
    rig.run()
    live = served(rig.host)
    # On the tiny model an edit moves almost every greedy answer, so the strict guard refuses it.
    second = rig.edit(PROMPTS[1][0], "Quito", locality=["The Eiffel Tower is located"])
    rig.run()
    assert rig.get(second).status == "rejected" and rig.get(first).status == "applied"
    assert rig.get(first).superseded_by is None and rig.log.head().revision == 1
    assert same(served(rig.host), live)


def test_a_replica_follows_a_supersede_revision(rig: Rig, tiny_settings: Settings) -> None:
    from editing.registry import build_editor
    from tests.tiny import new_host
    from workers.follower import Follower
    from workers.state import ModelState

    host = new_host()
    editor = build_editor("ft", host=host, overrides=tiny_settings.editors.get("ft"))
    replica = Follower(state=ModelState(host=host, editor=editor, log=rig.log), log=rig.log)
    replica.initialise(rig.log.lineage())  # type: ignore[arg-type]
    rig.edit(PROMPT, "Rome")
    rig.run()
    rig.edit(*PROMPTS[1])
    rig.run()
    assert replica.catch_up() == 2
    rig.edit(PROMPT, "Berlin")
    rig.run()
    assert rig.log.head().kind == "supersede" and replica.catch_up() == 1
    assert replica.state.revision == 3 and replica.state.compute_checksum() == rig.log.head().checksum
    assert same(served(host), served(rig.host))
