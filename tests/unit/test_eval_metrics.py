"""Evaluation metrics on the tiny model, on cases whose answers are known by construction."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from editing.data.cases import EditCase, LocalityCase
from evaluation.metrics import (
    METRIC_KEYS,
    EncodedCase,
    aggregate,
    answer_text,
    counts,
    encode_case,
    evaluate,
    evaluate_encoded,
    string_match,
)
from evaluation.scoring import TFRequest, greedy, teacher_forced

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny-model ops are dominated by thread overhead


def _cases() -> list[EditCase]:
    return [
        EditCase(
            case_id=str(i), prompt=f"The capital of land {i} is", target_new=f"City{i}",
            target_true=f"Town{i}",
            rephrases=(f"Land {i} has its capital in", f"Capital of land {i}:"),
            locality=(LocalityCase(f"The river of place {i} is", f"Town{i}"),),
        )
        for i in range(4)
    ]


def _greedy_case(host: Any, prompt: str, n: int, *, rival_offset: int = 1) -> EncodedCase:
    """A case whose target_new is the model's own greedy continuation; target_true differs everywhere."""
    ids = tuple(host.encode_prompt(prompt))
    new = greedy(host, [ids], [n])[0]
    true = tuple((t + rival_offset) % 256 for t in new)
    return EncodedCase(prompt=ids, new=new, true=true, rephrases=(ids,), locality=(), new_text="",
                       locality_text=())


def test_unedited_model_has_full_agreement_locality(tiny_host: Any) -> None:
    own = evaluate(tiny_host, _cases())
    again = evaluate(tiny_host, _cases()[1:3], reference=own.reference)  # other batch composition
    for rows in (own.per_case, again.per_case):
        for row in rows:
            assert row["token.ls"] == 1.0
            assert row["em.ls"] == 1.0
            assert row["em_str.ls"] == 1.0


def test_efficacy_of_the_models_own_greedy_output_is_one(tiny_host: Any) -> None:
    case = _greedy_case(tiny_host, "The capital of France is", 5)
    row = evaluate_encoded(tiny_host, [case]).per_case[0]
    assert row["token.es"] == 1.0 and row["token.gs"] == 1.0
    assert row["em.es"] == 1.0
    assert row["cf.es"] == 1.0  # the greedy token beats any other token at every position


def test_probability_comparison_prefers_the_greedy_token(tiny_host: Any) -> None:
    case = _greedy_case(tiny_host, "The capital of France is", 1)
    row = evaluate_encoded(tiny_host, [case]).per_case[0]
    assert row["cf_prob.es"] == 1.0
    flipped = EncodedCase(prompt=case.prompt, new=case.true or (), true=case.new, rephrases=(), locality=(),
                          new_text="", locality_text=())
    row = evaluate_encoded(tiny_host, [flipped]).per_case[0]
    assert row["cf.es"] == 0.0 and row["cf_prob.es"] == 0.0


def test_locality_comparison_swaps_roles(tiny_host: Any) -> None:
    """LS succeeds while the locality answer (the model's own greedy token) beats target_new."""
    q = tuple(tiny_host.encode_prompt("The river of Paris is"))
    answer = greedy(tiny_host, [q], [1])[0]
    new = ((answer[0] + 7) % 256,)
    case = EncodedCase(prompt=q, new=new, true=answer, rephrases=(), locality=((q, answer),), new_text="",
                       locality_text=("x",))
    row = evaluate_encoded(tiny_host, [case]).per_case[0]
    assert row["cf.ls"] == 1.0 and row["cf_prob.ls"] == 1.0
    assert row["token.ls_gold"] == 1.0 and row["em.ls_gold"] == 1.0


def test_comparison_truncates_to_the_shorter_target(tiny_host: Any) -> None:
    prompt = tuple(tiny_host.encode_prompt("Hello there"))
    score = teacher_forced(tiny_host, [TFRequest(prompt, (65, 66, 67), ((68,), (68, 69, 70, 71)))])[0]
    assert len(score.wins[(68,)]) == 1 and len(score.wins[(68, 69, 70, 71)]) == 3


def test_cases_without_probes_contribute_nothing() -> None:
    rows: list[dict[str, float | None]] = [
        {**dict.fromkeys(METRIC_KEYS), "token.es": 1.0, "token.gs": 0.5, "token.ls": 1.0},
        {**dict.fromkeys(METRIC_KEYS), "token.es": 0.0, "token.gs": None, "token.ls": 1.0},
    ]
    summary = aggregate(rows)
    expected = {"es": 0.5, "gs": 0.5, "ls": 1.0, "ls_gold": None, "mean": pytest.approx(2 / 3)}
    assert summary["token"] == expected
    assert summary["cf"]["mean"] is None
    assert counts(rows)["token.gs"] == 1 and counts(rows)["token.es"] == 2


def test_case_without_target_true_has_no_comparison_scores(tiny_host: Any) -> None:
    case = EditCase(case_id="z", prompt="Who wrote it?", target_new="Ann", rephrases=(),
                    locality=(LocalityCase("Sky colour?", "blue"),))
    row = evaluate(tiny_host, [case]).per_case[0]
    assert row["cf.es"] is None and row["cf_prob.ls"] is None and row["token.gs"] is None
    assert row["token.es"] is not None and row["token.ls"] == 1.0


def test_answer_text_stops_at_eos_and_newline(tiny_host: Any) -> None:
    tok = tiny_host.tokenizer

    def ids(text: str) -> tuple[int, ...]:
        return tuple(tok(text, add_special_tokens=False)["input_ids"])

    assert answer_text(tok, ids(" Paris\nLondon")) == "Paris"
    assert answer_text(tok, ids(" Paris") + (tok.eos_token_id,) + ids("ian")) == "Paris"
    assert answer_text(tok, ids("  Paris  ")) == "Paris"


@pytest.mark.parametrize(
    ("text", "target", "expected"),
    [("Paris", "Paris", True), ("Paris, France", " Paris ", True), ("Parisian", "Paris", False),
     ("Pari", "Paris", False), ("New York City", "New York", True), ("", "x", False), ("x", "", False)],
)
def test_string_match(text: str, target: str, expected: bool) -> None:
    assert string_match(text, target) is expected


def test_batching_gives_the_same_scores_as_one_at_a_time(tiny_host: Any) -> None:
    from evaluation.metrics import EvalOptions

    batched = evaluate(tiny_host, _cases(), options=EvalOptions(batch_size=32))
    single = evaluate(tiny_host, _cases(), options=EvalOptions(batch_size=1))
    assert batched.per_case == single.per_case
    encoded = [encode_case(tiny_host, c) for c in _cases()]
    requests = [TFRequest(c.prompt, c.new, (c.true or (),)) for c in encoded]
    for a, b in zip(teacher_forced(tiny_host, requests, batch_size=8),
                    teacher_forced(tiny_host, requests, batch_size=1), strict=True):
        assert a.argmax == b.argmax and a.wins == b.wins
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    prompts = [c.prompt for c in encoded] + [r for c in encoded for r in c.rephrases]
    lengths = [3 + i % 4 for i in range(len(prompts))]
    one_by_one = greedy(tiny_host, prompts, lengths, batch_size=1)
    assert greedy(tiny_host, prompts, lengths, batch_size=16) == one_by_one


def test_teacher_forced_log_probs_match_the_host(tiny_host: Any) -> None:
    pairs = [("The capital of France is", "Paris"), ("A", "longer answer here")]
    requests = [TFRequest(tuple(tiny_host.encode_prompt(p)), tuple(tiny_host.encode_continuation(t)))
                for p, t in pairs]
    for (prompt, target), score in zip(pairs, teacher_forced(tiny_host, requests), strict=True):
        assert sum(score.logprobs) == pytest.approx(tiny_host.score(prompt, [target])[0][0], abs=1e-4)


def test_greedy_matches_hf_generate(tiny_host: Any) -> None:
    prompt = tuple(tiny_host.encode_prompt("Once upon a time"))
    ids = torch.tensor([prompt])
    out = tiny_host.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                   do_sample=False, pad_token_id=tiny_host.tokenizer.pad_token_id,
                                   eos_token_id=None)
    assert greedy(tiny_host, [prompt], [6])[0] == tuple(out[0, len(prompt):].tolist())
