"""MEMoE and LEMoE on the tiny model: wrapping, routing, undo, state round trips, generation."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from contract.protocol import EditSpec
from editing.artifacts import tensors_from_bytes, tensors_to_bytes
from editing.editors.base import Editor, RemoveExperts
from editing.editors.moe_adaptor.codec import tensor_json
from editing.editors.moe_adaptor.layer import MoEAdaptorLayer
from editing.editors.moe_adaptor.training_tail import tail_matches_model
from editing.host import ModelHost
from editing.registry import build_editor
from tests.helpers import TINY_EDITOR_CONFIGS
from tests.tiny import batch, new_host, same, served, target_nll

EDITS = [
    EditSpec(prompt="The Eiffel Tower is located in", target="Rome", subject="Eiffel Tower"),
    EditSpec(prompt="The capital of Peru is", target="Lima", subject="Peru"),
    EditSpec(prompt="Mount Fuji stands in", target="Chile", subject="Mount Fuji"),
    EditSpec(prompt="Danube flows into the", target="Pacific"),  # subject inferred
]
PARAPHRASES = [
    "Where is the Eiffel Tower? It is in",
    "Peru has its capital in",
    "In which country is Mount Fuji?",
]
UNRELATED = "Bananas are yellow and"
NAMES = ("memoe", "lemoe")


def make(name: str, host: ModelHost | None = None, **overrides: Any) -> Editor:
    return build_editor(name, host=host or new_host(), overrides={**TINY_EDITOR_CONFIGS[name], **overrides})


def edit_all(editor: Editor, edits: list[EditSpec] = EDITS[:3]) -> list[Any]:
    return [editor.apply(editor.compute(batch(e, batch_id=f"b{i}"))) for i, e in enumerate(edits)]


def state(editor: Editor) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in editor.state_tensors().items()}


@torch.no_grad()
def logits(host: ModelHost, prompt: str) -> torch.Tensor:
    ids = torch.tensor([host.encode_prompt(prompt)])
    return host.model(input_ids=ids).logits


@pytest.mark.parametrize("name", NAMES)
def test_the_wrapped_model_is_the_base_model_before_any_edit(name: str) -> None:
    base = new_host()
    editor = make(name)
    assert isinstance(editor.host.model.model.layers[0].mlp, MoEAdaptorLayer)
    for prompt in [EDITS[0].prompt, UNRELATED]:
        assert torch.equal(logits(editor.host, prompt), logits(base, prompt))


@pytest.mark.parametrize("name", NAMES)
def test_the_wrapper_keeps_base_names_and_prefixes_its_own(name: str) -> None:
    editor = make(name)
    edit_all(editor, EDITS[:1])
    host = editor.host
    assert (
        host.parameter("model.layers.0.mlp.down_proj.weight")
        is host.model.model.layers[0].mlp.base_layer.down_proj.weight
    )
    added = [n for n in served(host) if n.startswith("model.layers.0.mlp.") and ".base_layer." not in n]
    assert added and all(n.split(".mlp.")[1].startswith("moe_") for n in added)
    assert not any(p.requires_grad for p in host.model.parameters())


def test_the_cached_tail_reproduces_the_model() -> None:
    editor = make("memoe")
    tokens = editor.host.encode_pairs([(e.prompt, e.target) for e in EDITS])
    assert tail_matches_model(editor.host.model, layer=0, wrapper=editor.layer, tokens=tokens)


@pytest.mark.parametrize("name", NAMES)
def test_a_paraphrase_routes_like_its_edit(name: str) -> None:
    editor = make(name, gate_input="anchor") if name == "memoe" else make(name)
    edit_all(editor)
    routes = editor.routes([e.prompt for e in EDITS[:3]])  # type: ignore[attr-defined]
    assert all(r is not None for r in routes)
    assert editor.routes(PARAPHRASES) == routes  # type: ignore[attr-defined]
    if name == "lemoe":
        assert routes == ["b0", "b1", "b2"]


def test_memoe_skips_inputs_without_an_edited_subject() -> None:
    editor = make("memoe")
    edit_all(editor)
    assert editor.routes([UNRELATED, "The capital of Chile is"]) == [None, None]  # type: ignore[attr-defined]


def test_remove_experts_is_exact_after_several_edits() -> None:
    editor = make("lemoe")
    host = editor.host
    artifacts = []
    snapshots = [(served(host), state(editor))]
    for i, e in enumerate(EDITS[:3]):
        artifacts.append(editor.compute(batch(e, batch_id=f"b{i}")))
        assert editor.apply(artifacts[-1]) == RemoveExperts((f"b{i}",))
        snapshots.append((served(host), state(editor)))
    editor.restore(RemoveExperts(("b2",)))
    assert same(served(host), snapshots[2][0]) and same(state(editor), snapshots[2][1])
    editor.restore(RemoveExperts(("b0",)))  # from the middle: what applying b1 alone gives
    fresh = make("lemoe")
    fresh.apply(artifacts[1])
    assert same(state(editor), state(fresh))
    assert torch.equal(logits(host, EDITS[1].prompt), logits(fresh.host, EDITS[1].prompt))
    editor.restore(RemoveExperts(("b1",)))
    assert same(served(host), snapshots[0][0]) and state(editor) == {}


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_safetensors_with_any_number_of_experts(name: str) -> None:
    editor = make(name)
    empty = state(editor)
    edit_all(editor)
    saved = tensors_from_bytes(tensors_to_bytes(editor.state_tensors()))
    other = make(name)
    edit_all(other, [EDITS[3]])  # different history, different expert count
    other.load_state_tensors(saved)
    assert same(state(other), state(editor))
    for prompt in [EDITS[1].prompt, PARAPHRASES[2], UNRELATED]:
        assert torch.equal(logits(other.host, prompt), logits(editor.host, prompt))
    other.load_state_tensors(tensors_from_bytes(tensors_to_bytes(empty)))
    assert same(state(other), empty)


@pytest.mark.parametrize("name", NAMES)
def test_load_rejects_foreign_state(name: str) -> None:
    editor = make(name)
    edit_all(editor, EDITS[:1])
    bad = {k: v for k, v in editor.state_tensors().items() if not k.endswith("down_proj")}
    with pytest.raises(ValueError):
        editor.load_state_tensors(bad)


@pytest.mark.parametrize(("name", "overrides"), [("lemoe", {"threshold": True}), ("memoe", {})])
def test_unrelated_prompts_are_bitwise_unchanged_by_edits(name: str, overrides: dict[str, Any]) -> None:
    editor = make(name, **overrides)
    host = editor.host
    before_text, before_logits = host.generate(UNRELATED, max_new_tokens=8), logits(host, UNRELATED)
    edit_all(editor)
    assert host.generate(UNRELATED, max_new_tokens=8) == before_text
    assert torch.equal(logits(host, UNRELATED), before_logits)
    assert editor.routes([UNRELATED]) == [None]  # type: ignore[attr-defined]
    assert host.score(EDITS[2].prompt, [EDITS[2].target])[0][0] > -3.0  # the last edit holds


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("positions", ["all", "subject", "from_subject"])
def test_generation_with_kv_cache_routes_once_at_prefill(name: str, positions: str) -> None:
    from editing.editors.moe_adaptor.routing import PrefillHook

    editor = make(name, bypass_tokens=positions)
    host = editor.host
    edit_all(editor)
    calls: list[bool] = []
    planner = editor._plan  # type: ignore[attr-defined]

    def counting(*args: Any) -> Any:
        plan = planner(*args)
        calls.append(plan is not None)
        return plan

    editor._hook.remove()  # type: ignore[attr-defined]
    handle = PrefillHook(context=editor.layer.moe_context, planner=counting).install(host.model)  # type: ignore[attr-defined]
    edit = EDITS[2]  # the last edit (MEMoE retrains its shared experts on every batch)
    prompt = host.encode_prompt(edit.prompt)
    with torch.no_grad():
        out = host.model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt)),
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=host.tokenizer.pad_token_id,
        )
    handle.remove()
    assert calls == [True]  # one plan, at prefill; six tokens decoded with it
    generated = out[0, len(prompt) :].tolist()
    if positions == "all":
        assert host.tokenizer.decode(generated).startswith(" " + edit.target)
    assert generated == greedy_without_cache(host, editor, prompt, steps=len(generated))


@torch.no_grad()
def greedy_without_cache(host: ModelHost, editor: Editor, ids: list[int], *, steps: int) -> list[int]:
    """Greedy decoding that re-runs the whole sequence each step with the prompt's plan stretched
    over the generated positions (as decoding with a cache applies it); no hook is installed."""
    context = editor.layer.moe_context  # type: ignore[attr-defined]
    plan = editor._plan(torch.tensor([ids]), None, None)  # type: ignore[attr-defined]
    out: list[int] = []
    for _ in range(steps):
        full = torch.tensor([ids + out])
        context.set(_stretch(plan, full.shape[1]))
        out.append(int(host.model(input_ids=full, use_cache=False).logits[0, -1].argmax()))
    return out


def _stretch(plan: Any, length: int) -> Any:
    import dataclasses

    if plan is None or plan.tokens is None:
        return plan
    extra = torch.full((plan.tokens.shape[0], length - plan.tokens.shape[1]), plan.later, dtype=torch.bool)
    return dataclasses.replace(plan, tokens=torch.cat([plan.tokens, extra], dim=1))


def test_lemoe_routes_every_batch_to_its_own_expert_at_a_high_learning_rate() -> None:
    editor = make("lemoe", steps=10, lr=1e-1)
    specs = [EditSpec(prompt=f"The capital of Land{i} is", target=f"Town{i}", subject=f"Land{i}") for i in range(8)]
    for i in range(4):
        artifact = editor.compute(batch(*specs[2 * i : 2 * i + 2], batch_id=f"b{i}"))
        assert artifact.meta["routing_accuracy"] == 1.0 and artifact.meta["old_anchors_kept"] == 1.0
        editor.apply(artifact)
    assert editor.routes([s.prompt for s in specs]) == [f"b{i // 2}" for i in range(8)]  # type: ignore[attr-defined]


def test_lemoe_keeps_a_subjects_earlier_fact_when_it_edits_another() -> None:
    """Routing picks one expert per subject: the newer expert learns the subject's earlier edits."""
    editor = make("lemoe")
    capital = EditSpec(prompt="The capital of Japan is", target="Kyoto", subject="Japan")
    currency = EditSpec(prompt="The currency of Japan is the", target="euro", subject="Japan")
    before = target_nll(editor.host, capital.prompt, capital.target)
    editor.apply(editor.compute(batch(capital, batch_id="b1")))
    second = editor.compute(batch(currency, batch_id="b2"))
    assert second.meta["carried"] == 1
    assert tensor_json(second.tensors["edits"]) == [
        [currency.prompt, "euro", "Japan"], [capital.prompt, "Kyoto", "Japan"]
    ]
    editor.apply(second)
    assert editor.routes([capital.prompt, currency.prompt]) == ["b2", "b2"]  # type: ignore[attr-defined]
    assert target_nll(editor.host, capital.prompt, capital.target) < before / 4
    again = editor.compute(batch(EditSpec(prompt=capital.prompt, target="Osaka", subject="Japan"), batch_id="b3"))
    assert [p for p, _, _ in tensor_json(again.tensors["edits"])] == [capital.prompt, currency.prompt]
    assert again.meta["carried"] == 1  # the new target of the same prompt replaces the old one


def test_lemoe_loads_experts_saved_before_they_held_their_edits() -> None:
    editor = make("lemoe")
    editor.apply(editor.compute(batch(EDITS[0])))
    saved = {k: v for k, v in editor.state_tensors().items() if not k.endswith("/edits")}
    fresh = make("lemoe")
    fresh.load_state_tensors(saved)
    assert tensor_json(fresh.state_tensors()["b1/edits"]) == []
    assert fresh.routes([EDITS[0].prompt]) == ["b1"]  # type: ignore[attr-defined]

