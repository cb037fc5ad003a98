"""Subject-keyed rledit: keys at the subject's last token, refinement, protection at every token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from contract.protocol import EditSpec
from editing.editors.base import EditBatch
from editing.editors.hypernet.anchors import position_mask, subject_positions
from editing.editors.hypernet.capture import answer_logits, collect
from editing.editors.hypernet.keep_basis import prompt_keys
from editing.editors.hypernet.prefix import PrefixCache
from editing.editors.hypernet.refine import per_edit_nll, refine
from editing.registry import build_editor
from tests.tiny import new_host, train_tiny

SUBJECT = {"untrained": True, "modules": "down_proj:0-1", "lr": 0.1, "key_site": "subject"}
EIFFEL = EditSpec(prompt="The Eiffel Tower is located in", target="Rome", subject="Eiffel Tower")


def deep_host() -> Any:
    """Four layers: a change at the subject in layers 0-1 reaches the answer through later attention."""
    return new_host(num_hidden_layers=4)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_subject_position_is_its_last_token_and_falls_back_to_the_prompt_end() -> None:
    host = deep_host()
    prompt = "The Eiffel Tower is located in"
    ids = host.encode_prompt(prompt)
    at = subject_positions(host, [prompt, prompt, prompt], ["Eiffel Tower", "eiffel  tower", "Louvre"])
    # byte-level tokenizer: the token of the "r" that ends "Tower"
    assert host.tokenizer.decode(ids[at[0]]) == "r"
    assert host.tokenizer.decode(ids[: at[0] + 1], skip_special_tokens=True).endswith("Eiffel Tower")
    assert at[1] == at[0]  # case and spacing do not matter
    assert at[2] == len(ids) - 1  # not in the prompt: the last token


def test_one_key_row_per_edit_read_at_the_subject() -> None:
    editor = build_editor("rledit", host=deep_host(), overrides={**SUBJECT, "refine_steps": 0})
    other = EditSpec(prompt="The capital of Peru is", target="Lima")  # subject inferred: Peru
    artifact = editor.compute(EditBatch("b", (EIFFEL, other)))
    assert artifact.meta["key_site"] == "subject" and artifact.meta["refine_steps"] == 0
    host = editor.host
    tokens = host.encode_pairs([(EIFFEL.prompt, EIFFEL.target), (other.prompt, other.target)])
    sites = position_mask(tokens, subject_positions(host, [EIFFEL.prompt, other.prompt], ["Eiffel Tower", "Peru"]))
    factors, _ = collect(host.model, editor.modules, tokens, sites)
    for module in editor.modules:
        assert artifact.tensors[f"left/{module}"].shape[0] == 2  # one row per edit, not per answer token
        assert factors[module].keys.shape[0] == 2


def test_refinement_lowers_every_edits_loss_and_stops_when_it_is_low() -> None:
    host = deep_host()
    modules = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    pairs = [(EIFFEL.prompt, EIFFEL.target), ("The capital of Peru is", "Lima")]
    tokens = host.encode_pairs(pairs)
    sites = position_mask(tokens, subject_positions(host, [p for p, _ in pairs], ["Eiffel Tower", "Peru"]))
    start = {m: torch.zeros(2, 32) for m in modules}  # down_proj outputs the hidden size
    prefix = PrefixCache(host, modules)

    def logits() -> torch.Tensor:
        return prefix.logits(pairs)[0]

    before = per_edit_nll(answer_logits(host.model, tokens), tokens)
    changes, taken = refine(host.model, tokens, sites, start, logits_fn=logits, steps=30, lr=2.0, stop_nll=0.0)
    assert taken == 30
    from editing.editors.hypernet.refine import _added

    with _added(host.model, changes, sites, torch.arange(2)), torch.no_grad():
        after = per_edit_nll(answer_logits(host.model, tokens), tokens)
    assert bool((after < before - 1.0).all()), (before, after)
    _, stopped = refine(host.model, tokens, sites, start, logits_fn=logits, steps=30, lr=0.5, stop_nll=1e9)
    assert stopped == 0


def test_a_subject_keyed_edit_lands_and_named_prompts_keep_every_tokens_output() -> None:
    editor = build_editor("rledit", host=deep_host(), overrides={**SUBJECT, "refine_steps": 40})
    guarded = "The Louvre is located in"
    host = editor.host
    before = host.score(EIFFEL.prompt, [EIFFEL.target])[0][0]
    edit = EIFFEL.model_copy(update={"locality": [guarded]})
    artifact = editor.compute(EditBatch("b", (edit,)))
    assert artifact.meta["protected_prompts"] == 1
    assert artifact.meta["protected_rows"] == len(host.encode_prompt(guarded))  # every token of it
    for module in editor.modules:
        keys = prompt_keys(host, [module], [guarded], every_token=True)[module]  # (L, d_k)
        shift = artifact.tensors[f"coeffs/{module}"].T @ artifact.tensors[f"left/{module}"]
        own = artifact.tensors[f"left/{module}"].shape[0]
        assert float((keys @ shift.T).norm()) < 1e-2 * max(1.0, float(shift.norm())), module
        assert own == 1  # the protected rows shape the solve but are not stored (solve.compact)
    editor.apply(artifact)
    assert host.score(EIFFEL.prompt, [EIFFEL.target])[0][0] > before + 1.0


def test_a_subject_keyed_checkpoint_trains_and_says_so(tmp_path: Path) -> None:
    from editing.editors.hypernet.checkpoint import read_card

    path = train_tiny(tmp_path, host=deep_host(), steps=2, key_site="subject", modules="down_proj:0-1")
    card = read_card(path)
    assert card.key_site == "subject" and card.train["key_site"] == "subject"
    editor = build_editor("rledit", host=deep_host(), overrides={"checkpoint": str(path), "refine_steps": 2})
    artifact = editor.compute(EditBatch("b", (EIFFEL,)))
    assert artifact.meta["key_site"] == "subject"
    assert all(artifact.tensors[f"left/{m}"].shape[0] == 1 for m in editor.modules)


def test_refinement_fits_each_edit_in_its_contexts_with_one_shared_change() -> None:
    """Two contexts of one edit (the prompt, and after a neutral sentence) own one change: refining
    lowers the answer's loss in both, and the artifact still has one key row per edit."""
    from editing.editors.hypernet.refine import _added, contexts

    host = deep_host()
    prompts = contexts(host, EIFFEL.prompt, prefixes=("I was reading about it today. ",), chat=True)
    assert prompts[:2] == [EIFFEL.prompt, "I was reading about it today. " + EIFFEL.prompt]
    assert len(prompts) == 2 + bool(getattr(host.tokenizer, "chat_template", None))
    modules = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    pairs = [(p, EIFFEL.target) for p in prompts]
    tokens = host.encode_pairs(pairs)
    sites = position_mask(tokens, subject_positions(host, prompts, ["Eiffel Tower"] * len(prompts)))
    owner = torch.zeros(len(prompts), dtype=torch.long)
    prefix = PrefixCache(host, modules)
    changes, _ = refine(host.model, tokens, sites, {m: torch.zeros(1, 32) for m in modules},
                        logits_fn=lambda: prefix.logits(pairs)[0], steps=30, lr=2.0, stop_nll=0.0, owner=owner)
    assert all(c.shape == (1, 32) for c in changes.values())
    before = per_edit_nll(answer_logits(host.model, tokens), tokens)
    with _added(host.model, changes, sites, owner), torch.no_grad():
        after = per_edit_nll(answer_logits(host.model, tokens), tokens)
    assert bool((after < before - 0.5).all()), (before, after)
    editor = build_editor("rledit", host=host, overrides={**SUBJECT, "refine_steps": 3})
    artifact = editor.compute(EditBatch("b", (EIFFEL,)))
    assert all(artifact.tensors[f"left/{m}"].shape[0] == 1 for m in editor.modules)
