"""MEMoE and LEMoE behind the real writer: revisions, rollback, revert, snapshots, settings."""

from __future__ import annotations

import pytest
import torch

from contract.config import Settings
from store.log import SqliteEditLog
from tests.helpers import LENIENT_GUARD, PROMPTS, tweak
from tests.tiny import Rig, same, served

NAMES = ("memoe", "lemoe")
SUBJECTS = ["Eiffel Tower", "Peru", "Mount Fuji", "Danube"]


def state(rig: Rig) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in rig.runtime.state.editor.state_tensors().items()}


def by_order(tensors: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """State values in key order with batch ids left out (LEMoE keys carry them)."""
    return [
        tensors[k] for k in sorted(tensors, key=lambda k: (k.rpartition("/")[0] != "", k.rpartition("/")[2]))
    ]


@pytest.fixture(params=NAMES)
def moe_rig(request: pytest.FixtureRequest, tiny_settings: Settings) -> Rig:
    return Rig(tweak(tiny_settings, {"editor": request.param}), SqliteEditLog(":memory:"))


def _edit(rig: Rig, i: int) -> str:
    prompt, target = PROMPTS[i]
    edit_id = rig.edit(prompt, target, subject=SUBJECTS[i])
    rig.run()
    assert rig.get(edit_id).status == "applied", rig.get(edit_id).error
    return edit_id


def test_the_writer_runs_the_configured_editor(moe_rig: Rig) -> None:
    assert moe_rig.runtime.state.editor.name == moe_rig.settings.editor
    _edit(moe_rig, 0)
    head = moe_rig.log.head()
    assert head.revision == 1 and head.checksum == moe_rig.runtime.state.compute_checksum()
    assert moe_rig.host.generate(PROMPTS[0][0], max_new_tokens=5).startswith(" " + PROMPTS[0][1])


def test_rollback_restores_revision_one_bitwise(moe_rig: Rig) -> None:
    _edit(moe_rig, 0)
    at_one = (served(moe_rig.host), state(moe_rig), moe_rig.runtime.state.compute_checksum())
    _edit(moe_rig, 1)
    assert not same(state(moe_rig), at_one[1])
    moe_rig.submit("rollback", {"to_revision": 1})
    moe_rig.run()
    assert same(served(moe_rig.host), at_one[0]) and same(state(moe_rig), at_one[1])
    assert moe_rig.runtime.state.compute_checksum() == at_one[2] == moe_rig.log.get_revision(1).checksum
    if moe_rig.settings.editor == "lemoe":
        assert {k.split("/")[0] for k in state(moe_rig)} == {moe_rig.log.get_revision(1).edit_ids[0]}


def test_revert_of_the_first_edit_equals_a_history_without_it(moe_rig: Rig, tiny_settings: Settings) -> None:
    first = _edit(moe_rig, 0)
    _edit(moe_rig, 1)
    moe_rig.submit("rollback", {"edit_ids": [first]})
    moe_rig.run()
    head = moe_rig.log.head()
    assert head.kind == "revert" and head.removed_ids == [first]
    assert moe_rig.get(first).status == "rolled_back"
    expected = Rig(tweak(tiny_settings, {"editor": moe_rig.settings.editor}), SqliteEditLog(":memory:"))
    _edit(expected, 1)
    got, want = state(moe_rig), state(expected)
    assert len(got) == len(want)
    assert all(torch.equal(a, b) for a, b in zip(by_order(got), by_order(want), strict=True))
    assert head.checksum == moe_rig.runtime.state.compute_checksum()


def test_replay_and_snapshots_reproduce_every_revision(tiny_settings: Settings) -> None:
    for name in NAMES:
        rig = Rig(
            tweak(tiny_settings, {"editor": name, "log": {"snapshot_every": 2}}), SqliteEditLog(":memory:")
        )
        for i in range(3):
            _edit(rig, i)
        live = state(rig)
        replay = rig.submit("replay", {})
        rig.run()
        assert rig.get(replay).status == "applied", rig.get(replay).error
        assert same(state(rig), live)
        rig.runtime.state.restore_to(3)  # from the snapshot at revision 2, then one artifact
        assert same(state(rig), live)


def test_editor_from_the_environment(monkeypatch: pytest.MonkeyPatch, tiny_settings: Settings) -> None:
    monkeypatch.setenv("FACTPATCH_EDITOR", "memoe")
    monkeypatch.setenv("FACTPATCH_EDITORS__MEMOE__STEPS", "30")
    settings = Settings(
        model=tiny_settings.model, data_dir=tiny_settings.data_dir, guard=LENIENT_GUARD
    )
    assert settings.editor == "memoe"
    overrides = {**tiny_settings.editors["memoe"], **settings.editors.get("memoe", {})}
    rig = Rig(tweak(settings, {"editors": {"memoe": overrides}}), SqliteEditLog(":memory:"))
    assert rig.runtime.state.editor.config.steps == 30  # type: ignore[attr-defined]
    _edit(rig, 0)
