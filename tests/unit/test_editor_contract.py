"""The contract every registered editor keeps, on the tiny model (house-style §7)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from contract.errors import NonFiniteDeltaError
from contract.protocol import EditSpec
from editing.artifacts import EditArtifact
from editing.editors.base import Editor
from editing.host import ModelHost
from editing.registry import build_editor, editor_names
from tests.helpers import TINY_EDITOR_CONFIGS
from tests.tiny import batch, new_host, same, served

EDITS = [
    EditSpec(prompt="The Eiffel Tower is located in", target="Rome", subject="Eiffel Tower"),
    EditSpec(prompt="The capital of Peru is", target="Lima", subject="Peru"),
    EditSpec(prompt="Mount Fuji stands in", target="Chile", subject="Mount Fuji"),
]


def make_editor(name: str, host: ModelHost) -> Editor:
    return build_editor(name, host=host, overrides=TINY_EDITOR_CONFIGS.get(name, {}))


@pytest.fixture(params=editor_names())
def editor(request: pytest.FixtureRequest, tiny_host: ModelHost) -> Editor:
    return make_editor(request.param, tiny_host)


def test_compute_changes_nothing(editor: Editor) -> None:
    weights, state = served(editor.host), {k: v.clone() for k, v in editor.state_tensors().items()}
    editor.compute(batch(EDITS[0]))
    assert same(served(editor.host), weights)
    assert same(editor.state_tensors(), state)


def test_apply_raises_the_target_logprob(editor: Editor) -> None:
    host = editor.host
    before = host.score(EDITS[0].prompt, [EDITS[0].target])[0][0]
    editor.apply(editor.compute(batch(EDITS[0])))
    after = host.score(EDITS[0].prompt, [EDITS[0].target])[0][0]
    assert after > before + 1.0


def test_restore_undo_is_bitwise(editor: Editor) -> None:
    editor.apply(editor.compute(batch(EDITS[0])))
    weights, state = served(editor.host), {k: v.clone() for k, v in editor.state_tensors().items()}
    undo = editor.apply(editor.compute(batch(EDITS[1], batch_id="b2")))
    assert not same(served(editor.host), weights)
    editor.restore(undo)
    assert same(served(editor.host), weights)
    assert same(editor.state_tensors(), state)


def test_artifact_round_trips_through_safetensors(editor: Editor) -> None:
    artifact = editor.compute(batch(EDITS[0], EDITS[1]))
    back = EditArtifact.from_bytes(artifact.to_bytes())
    assert (back.editor, back.version, back.meta) == (artifact.editor, artifact.version, artifact.meta)
    assert same(back.tensors, artifact.tensors)
    assert back.to_bytes() == artifact.to_bytes()


def test_replaying_stored_artifacts_reproduces_the_weights(editor: Editor) -> None:
    stored = []
    for i, edit in enumerate(EDITS):
        artifact = editor.compute(batch(edit, batch_id=f"b{i}"))
        stored.append(artifact.to_bytes())
        editor.apply(artifact)
    live, live_state = served(editor.host), {k: v.clone() for k, v in editor.state_tensors().items()}
    editor.reset()
    assert not same(served(editor.host), live)
    for data in stored:
        editor.apply(EditArtifact.from_bytes(data))
    assert same(served(editor.host), live)
    assert same(editor.state_tensors(), live_state)


def test_non_finite_artifact_is_refused_before_touching_the_model(editor: Editor) -> None:
    artifact = editor.compute(batch(EDITS[0]))
    name = next(k for k, t in artifact.tensors.items() if t.is_floating_point() and t.numel() > 0)
    poisoned: dict[str, Any] = dict(artifact.tensors)
    poisoned[name] = poisoned[name].clone()
    poisoned[name].view(-1)[0] = float("nan")
    weights = served(editor.host)
    with pytest.raises(NonFiniteDeltaError):
        editor.apply(EditArtifact(editor=artifact.editor, version=artifact.version, tensors=poisoned,
                                  meta=artifact.meta))
    assert same(served(editor.host), weights)


def test_bf16_apply_and_undo_are_exact(tiny_host: ModelHost) -> None:
    """fp32 masters make apply/undo exact in a low-precision serving dtype too."""
    host = new_host(dtype=torch.bfloat16)
    for name in editor_names():
        editor = make_editor(name, host)
        weights = served(host)
        undo = editor.apply(editor.compute(batch(EDITS[0])))
        assert not same(served(host), weights)
        editor.restore(undo)
        assert same(served(host), weights)
