"""Batched forwards for evaluation: teacher-forced scoring and greedy decoding, on token ids.

Everything here is a function of a `ModelHost` and token-id sequences; `metrics.py` turns the
results into metric values. Ids come from `host.encode_prompt` / `host.encode_continuation`, the
same tokenisation editors see through `host.encode_pairs`.

- `teacher_forced`: full sequences in right-padded batches (the `TokenBatch` layout of
  `encode_pairs`), sorted by prompt length so that padding and the span of target positions whose
  logits are computed (`logits_to_keep`) stay short. Prompts are deliberately not shared through a
  KV cache between continuations: adaptor editors may route on the whole input, and a teacher-
  forced score must see the sequence the way a plain forward does.
- `greedy`: the serving decoder (left-padded batches, the KV cache) with argmax at every step and
  no stopping at end of sequence; no repetition penalty: the model's own `generation_config` plays
  no part.

Batching changes nothing but float rounding: results equal one-at-a-time runs up to ~1e-5 in
log-probabilities (a test pins this).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from editing.generation import GenerationRequest, Sampling
from editing.host import ModelHost, TokenBatch

Ids = tuple[int, ...]


@dataclass(frozen=True)
class TFRequest:
    """Score `target` after `prompt`; compare it token by token with each rival continuation."""

    prompt: Ids
    target: Ids
    rivals: tuple[Ids, ...] = ()

    def __post_init__(self) -> None:
        assert self.prompt and self.target, "teacher forcing needs a prompt and a target token"


@dataclass(frozen=True)
class TFScore:
    """Teacher-forced results at the target positions of one sequence (m = len(target))."""

    argmax: Ids  # (m,) argmax token predicting target_j given prompt + target_<j
    logprobs: tuple[float, ...]  # (m,) log P(target_j | prompt, target_<j)
    wins: dict[Ids, tuple[bool, ...]] = field(default_factory=dict)
    # rival -> (min(m, len(rival)),): logit[target_j] > logit[rival_j] at the same position

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs)


def _chunks(order: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), size):
        yield list(order[start : start + size])


def pack_right(host: ModelHost, rows: Sequence[tuple[Ids, Ids]]) -> TokenBatch:
    """Prompt + target rows, right-padded, labels on the targets: `encode_pairs`' layout."""
    width = max(len(p) + len(t) for p, t in rows)
    pad = int(host.tokenizer.pad_token_id)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)  # (B, L)
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, L)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # (B, L)
    for i, (prompt, target) in enumerate(rows):
        n = len(prompt) + len(target)
        input_ids[i, :n] = torch.tensor(prompt + target)
        mask[i, :n] = 1
        labels[i, len(prompt) : n] = torch.tensor(target)
    return TokenBatch(input_ids.to(host.device), mask.to(host.device), labels.to(host.device))


@torch.no_grad()
def teacher_forced(host: ModelHost, requests: Sequence[TFRequest], *, batch_size: int = 32) -> list[TFScore]:
    """One `TFScore` per request, in request order."""
    # by prompt length: little padding, and the span of target positions (`logits_to_keep`) stays short
    order = sorted(range(len(requests)), key=lambda i: (len(requests[i].prompt), len(requests[i].target)))
    out: list[TFScore | None] = [None] * len(requests)
    for chunk in _chunks(order, batch_size):
        for i, score in zip(chunk, _score_chunk(host, [requests[i] for i in chunk]), strict=True):
            out[i] = score
    return [s for s in out if s is not None]


def _score_chunk(host: ModelHost, requests: Sequence[TFRequest]) -> list[TFScore]:
    batch = pack_right(host, [(r.prompt, r.target) for r in requests])
    first = min(len(r.prompt) for r in requests) - 1  # earliest position predicting a target token
    last = max(len(r.prompt) + len(r.target) for r in requests) - 1  # one past the latest
    keep = torch.arange(first, last, device=host.device)
    logits = host.logits(batch, logits_to_keep=keep)  # (B, last - first, V)
    scores = []
    for row, request in enumerate(requests):
        start = len(request.prompt) - 1 - first
        scores.append(_score_row(logits[row, start : start + len(request.target)], request))
    return scores


def _score_row(logits: Tensor, request: TFRequest) -> TFScore:
    """`logits` (m, V): the rows predicting each target token."""
    target = torch.tensor(request.target, device=logits.device)  # (m,)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, target[:, None]).squeeze(-1)  # (m,)
    wins = {}
    for rival in request.rivals:
        k = min(len(rival), len(target))
        rows = torch.arange(k, device=logits.device)
        rival_ids = torch.tensor(rival[:k], device=logits.device)
        wins[rival] = tuple(bool(w) for w in logits[rows, target[:k]] > logits[rows, rival_ids])
    return TFScore(
        argmax=tuple(int(t) for t in logits.argmax(dim=-1)),
        logprobs=tuple(float(p) for p in logprobs),
        wins=wins,
    )


@torch.no_grad()
def greedy(
    host: ModelHost, prompts: Sequence[Ids], lengths: Sequence[int], *, batch_size: int = 32
) -> list[Ids]:
    """Greedy continuation of each prompt, `lengths[i]` tokens long (EOS is not special here), on the
    serving decoder (`ModelHost.generate_many`) in batches of prompts of similar length."""
    assert len(prompts) == len(lengths)
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), lengths[i]))  # little left padding
    out: list[Ids] = [()] * len(prompts)
    for chunk in _chunks(order, batch_size):
        requests = [GenerationRequest(ids=prompts[i], sampling=Sampling(max_new_tokens=lengths[i], ignore_eos=True))
                    for i in chunk]
        for i, generated in zip(chunk, host.generate_many(requests), strict=True):
            out[i] = generated.ids
    return out
