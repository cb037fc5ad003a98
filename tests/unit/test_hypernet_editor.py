"""The rledit/malmen editors in the service: artifacts, the N guard, checkpoints, rollback and replay."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contract.config import Settings
from contract.errors import CheckpointMismatchError, InvalidEditError
from contract.protocol import EditSpec, Lineage, NewRevision, utc_now
from editing.editors.base import EditBatch
from editing.editors.hypernet.checkpoint import train_command
from editing.registry import build_editor
from store.log import SqliteEditLog
from tests.helpers import PROMPTS, tweak
from tests.tiny import Rig, new_host, same, served, train_tiny
from workers.runtime import choose_editor

UNTRAINED = {"untrained": True, "modules": "up_proj:0-1", "lr": 0.1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny rledit checkpoint for model id 'tiny' (what the Rig's host calls itself)."""
    return train_tiny(tmp_path_factory.mktemp("ckpt"), steps=1)


def spec(prompt: str, target: str) -> EditSpec:
    return EditSpec(prompt=prompt, target=target)


def test_the_artifact_holds_factors_not_a_dense_shift() -> None:
    editor = build_editor("rledit", host=new_host(), overrides=UNTRAINED)
    batch = EditBatch("b", (spec(*PROMPTS[0]), spec(*PROMPTS[1])))
    artifact = editor.compute(batch)
    n = artifact.meta["answer_tokens"]
    assert n == len(" Rome") + len(" Lima")  # byte-level tokenizer: one token per byte
    expected = {}
    for module in editor.modules:
        expected[f"left/{module}"] = (n, 32)
        expected[f"coeffs/{module}"] = (n, 64)
    expected.update({"norm/32x64/count": (1,), "norm/32x64/mean": (96,), "norm/32x64/var": (96,)})
    assert {k: tuple(v.shape) for k, v in artifact.tensors.items()} == expected
    assert all(t.dtype == torch.float32 for k, t in artifact.tensors.items() if not k.endswith("count"))
    assert artifact.nbytes() == 2 * n * (32 + 64) * 4 + 8 + 2 * 96 * 4  # factors, no 32x64 matrix
    assert set(artifact.meta) >= {"alpha", "ridge", "checkpoint_sha256", "answer_tokens", "serving_dtype"}


def test_applying_adds_c_transpose_k_to_the_fp32_masters() -> None:
    editor = build_editor("rledit", host=new_host(), overrides=UNTRAINED)
    artifact = editor.compute(EditBatch("b", (spec(*PROMPTS[0]),)))
    module = editor.modules[0]
    before = editor.host.master(f"{module}.weight").clone()
    editor.apply(artifact)
    shift = artifact.tensors[f"coeffs/{module}"].T @ artifact.tensors[f"left/{module}"]  # (d_v, d_k)
    assert torch.equal(editor.host.master(f"{module}.weight"), before + shift)


@pytest.mark.parametrize("use_checkpoint", [False, True])
def test_locality_prompts_sent_with_an_edit_are_protected(use_checkpoint: bool, checkpoint: Path) -> None:
    """Their keys join the solve with a desired change of 0: the shift hardly moves them, while
    the same edit without them does."""
    from editing.editors.hypernet.keep_basis import prompt_keys

    overrides = {"checkpoint": str(checkpoint)} if use_checkpoint else UNTRAINED
    editor = build_editor("rledit", host=new_host(), overrides=overrides)
    guarded = "The Eiffel Tower is in"
    moved = {}
    for name, locality in {"plain": [], "protected": [guarded]}.items():
        edit = EditSpec(prompt=PROMPTS[0][0], target=PROMPTS[0][1], locality=locality)
        artifact = editor.compute(EditBatch("b", (edit,)))
        assert artifact.meta["protected_prompts"] == len(locality)
        moved[name] = 0.0
        for module in editor.modules:
            key = prompt_keys(editor.host, [module], [guarded])[module]  # (1, d_k)
            shift = artifact.tensors[f"coeffs/{module}"].T @ artifact.tensors[f"left/{module}"]  # (d_v, d_k)
            moved[name] += float((key @ shift.T).norm())
    assert moved["protected"] < 0.1 * moved["plain"], moved
    no_protection = build_editor("rledit", host=new_host(), overrides={**overrides, "protect_locality": False})
    edit = EditSpec(prompt=PROMPTS[0][0], target=PROMPTS[0][1], locality=[guarded])
    assert no_protection.compute(EditBatch("b", (edit,))).meta["protected_prompts"] == 0


def test_batches_with_too_many_answer_tokens_are_refused() -> None:
    editor = build_editor("rledit", host=new_host(), overrides={**UNTRAINED, "max_answer_tokens": 6})
    with pytest.raises(InvalidEditError, match="answer tokens"):
        editor.compute(EditBatch("b", (spec(*PROMPTS[0]), spec(*PROMPTS[1]))))


def test_no_checkpoint_fails_at_start_up_with_the_train_command(tmp_path: Path) -> None:
    with pytest.raises(CheckpointMismatchError) as info:
        build_editor("rledit", host=new_host("some/model"))
    command = train_command(editor="rledit", model_id="some/model")
    assert command.startswith("factpatch train --model some/model --editor rledit")
    assert command in info.value.detail and info.value.extra["command"] == command


def test_a_checkpoint_loads_and_reset_restores_its_normaliser(checkpoint: Path) -> None:
    editor = build_editor("rledit", host=new_host(), overrides={"checkpoint": str(checkpoint)})
    base_state = {k: v.clone() for k, v in editor.state_tensors().items()}
    assert int(base_state["norm/32x64/count"]) > 0  # the checkpoint's statistics, not an empty normaliser
    artifact = editor.compute(EditBatch("b", (spec(*PROMPTS[0]),)))
    assert artifact.meta["checkpoint_sha256"] == editor.checkpoint_sha256 != "untrained"
    editor.apply(artifact)
    assert not same(editor.state_tensors(), base_state)
    editor.reset()
    assert same(editor.state_tensors(), base_state)
    with pytest.raises(CheckpointMismatchError, match="edits modules"):
        build_editor("rledit", host=new_host(), overrides={"checkpoint": str(checkpoint), "modules": "up_proj:1"})


@pytest.fixture()
def rig(tiny_settings: Settings, checkpoint: Path) -> Rig:
    settings = tweak(tiny_settings, {"editor": "rledit", "editors": {"rledit": {"checkpoint": str(checkpoint)}}})
    return Rig(settings, SqliteEditLog(":memory:"))


def test_the_writer_applies_and_rolls_back_an_rledit_edit(rig: Rig) -> None:
    assert rig.runtime.state.editor.name == "rledit"
    base, base_state = served(rig.host), {k: v.clone() for k, v in rig.runtime.state.editor.state_tensors().items()}
    before = rig.host.score(*PROMPTS[0][:1], [PROMPTS[0][1]])[0][0]
    edit_id = rig.edit(*PROMPTS[0])
    rig.run()
    assert rig.get(edit_id).status == "applied"
    assert rig.host.score(PROMPTS[0][0], [PROMPTS[0][1]])[0][0] > before
    rig.submit("rollback", {"to_revision": 0})
    rig.run()
    assert same(served(rig.host), base)
    assert same(rig.runtime.state.editor.state_tensors(), base_state)


def test_normaliser_state_survives_rollback_and_replay_bitwise(rig: Rig) -> None:
    editor, state = rig.runtime.state.editor, rig.runtime.state
    states = {0: {k: v.clone() for k, v in editor.state_tensors().items()}}
    weights = {0: served(rig.host)}
    for i, (prompt, target) in enumerate(PROMPTS, start=1):  # 4 revisions; a snapshot at revision 3
        rig.edit(prompt, target)
        rig.run()
        states[i], weights[i] = {k: v.clone() for k, v in editor.state_tensors().items()}, served(rig.host)
    assert len({int(s["norm/32x64/count"]) for s in states.values()}) == 5
    for target in (2, 4, 1, 3):
        rig.submit("rollback", {"to_revision": target})
        rig.run()
        assert same(editor.state_tensors(), states[target]) and same(served(rig.host), weights[target])
    editor.reset()
    state.restore_to(4, verify_each=True)  # replay from the base (and from the snapshot) checks every checksum
    assert same(editor.state_tensors(), states[4]) and same(served(rig.host), weights[4])


def test_choose_editor(tiny_settings: Settings, tmp_path: Path) -> None:
    """Configured editor first, else the edit log's (a restart never switches editors), else lemoe."""
    from store.log import open_log

    assert choose_editor(tiny_settings) == "ft"  # explicitly configured
    unset = tweak(tiny_settings, {"editor": None})
    assert choose_editor(unset) == "lemoe"
    log = open_log(unset)
    try:
        assert choose_editor(unset, log) == "lemoe"  # a fresh log
        log.init_lineage(
            lineage=Lineage(base_model="tiny", editor="memoe", base_checksum="c0", created_at=utc_now()),
            base=NewRevision(kind="base", base_revision=None, checksum="c0", editor="memoe", editor_version="1"),
        )
        assert choose_editor(unset, log) == "memoe"
        assert choose_editor(tiny_settings, log) == "ft"  # the setting still wins (and the writer says no)
    finally:
        log.close()


