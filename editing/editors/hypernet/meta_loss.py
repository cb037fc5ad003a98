"""The meta-loss of a turn (docs/hypernet.md §4): rephrase CE plus locality KL, decayed over turns.

Every backtracked batch is scored at W_t. Batch j turns back weighs μ^j; inside a batch every
example's loss is averaged over its answer tokens and the examples are averaged:
  L = Σ_j μ^j [mean_e CE(rephrase_e) + c_loc · mean_e KL(ref_e ‖ p_{W_t}(loc_e))].
The KL reference of a batch is its locality distribution at W_{t−1}, taken before ΔW_t lands.
The examples run in length-sorted chunks (CounterFact lengths vary 3x, so one padded batch
wastes most of its tokens); L is a sum over examples, so chunk gradients simply add up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from editing.editors.hypernet.capture import answer_logits, answer_rows, per_example_mean
from editing.host import ModelHost, TokenBatch

CHUNK = 8  # examples per forward pass
LogitsFn = Callable[[list[tuple[str, str]]], tuple[Tensor, TokenBatch]]
"""pairs -> ((N, V) answer-position logits, their token batch); e.g. `PrefixCache.logits`."""


def plain_logits(host: ModelHost) -> LogitsFn:
    def run(pairs: list[tuple[str, str]]) -> tuple[Tensor, TokenBatch]:
        tokens = host.encode_pairs(pairs)
        return answer_logits(host.model, tokens), tokens

    return run


@dataclass(frozen=True)
class TurnData:
    """One turn's examples as (prompt, continuation) pairs, aligned by edit."""

    edits: list[tuple[str, str]]
    rephrases: list[tuple[str, str]]
    locality: list[tuple[str, str]]
    subjects: list[str | None] | None = None  # per edit, where subject-keyed editors read keys


@dataclass
class Replay:
    """A batch that is still backtracked, with its locality log-probs at the previous weights."""

    data: TurnData
    refs: list[Tensor]  # per locality example: (n_tokens, V) log-probs at its answer positions


@dataclass(frozen=True)
class _Example:
    pair: tuple[str, str]
    weight: float
    ref: Tensor | None  # None: rephrase CE; else locality KL against this reference
    key: tuple[int, int]  # (replay, index) for the posts of locality examples


@dataclass(frozen=True)
class MetaLoss:
    loss: float
    rephrase_ce: float  # of the current batch
    locality_kl: float  # of the current batch
    posts: list[list[Tensor]]  # per replay, per locality example: (n_tokens, V) log-probs at W_t


def _chunks(host: ModelHost, pairs: list[tuple[str, str]]) -> list[list[int]]:
    """Indices of `pairs` in length-sorted groups of CHUNK."""
    lengths = [len(host.encode_prompt(p)) + len(host.encode_continuation(t)) for p, t in pairs]
    order = sorted(range(len(pairs)), key=lambda i: (lengths[i], i))
    return [order[i : i + CHUNK] for i in range(0, len(order), CHUNK)]


@torch.no_grad()
def locality_logprobs(host: ModelHost, pairs: list[tuple[str, str]], logits_fn: LogitsFn | None = None
                      ) -> list[Tensor]:
    """Per pair: (n_tokens, V) log-probs at its answer positions, no grad."""
    run = logits_fn or plain_logits(host)
    out: list[Tensor | None] = [None] * len(pairs)
    for group in _chunks(host, pairs):
        logits, tokens = run([pairs[i] for i in group])
        logp = torch.log_softmax(logits, dim=-1)  # (N, V)
        example, _ = answer_rows(tokens)
        for slot, i in enumerate(group):
            out[i] = logp[example == slot]
    return [t for t in out if t is not None]


def _examples(replays: list[Replay], decay: float, loc_coef: float) -> list[_Example]:
    out = []
    for j, replay in enumerate(replays):
        n = len(replay.data.rephrases)
        out += [_Example(p, decay**j / n, None, (j, i)) for i, p in enumerate(replay.data.rephrases)]
        m = len(replay.data.locality)
        out += [_Example(p, loc_coef * decay**j / m, replay.refs[i], (j, i))
                for i, p in enumerate(replay.data.locality)]
    return out


def _chunk_losses(run: LogitsFn, examples: list[_Example]) -> tuple[Tensor, list[Tensor]]:
    """(per-example loss (E,), per-example log-prob rows) of one chunk, with grad."""
    logits, tokens = run([e.pair for e in examples])
    logp = torch.log_softmax(logits, dim=-1)  # (N, V)
    example, labels = answer_rows(tokens)
    ce = -logp.gather(-1, labels[:, None]).squeeze(-1)  # (N,)
    refs = torch.cat([e.ref if e.ref is not None else logp.new_zeros(int((example == s).sum()), logp.shape[1])
                      for s, e in enumerate(examples)])  # (N, V)
    kl = (refs.exp() * (refs - logp)).sum(-1)  # (N,); meaningless on CE rows, masked below
    is_kl = torch.tensor([e.ref is not None for e in examples], device=logp.device)[example]  # (N,)
    rows = torch.where(is_kl, kl, ce)
    values = per_example_mean(rows, example, len(examples))  # (E,)
    return values, [logp[example == s].detach() for s in range(len(examples))]


def weight_grads(host: ModelHost, params: list[nn.Parameter], replays: list[Replay], *, decay: float,
                 loc_coef: float, logits_fn: LogitsFn | None = None) -> tuple[MetaLoss, list[Tensor]]:
    """The meta-loss at W_t (replays[0] is the current batch) and ∂L/∂W_linear of `params` (fp32)."""
    run = logits_fn or plain_logits(host)
    examples = _examples(replays, decay, loc_coef)
    values = [0.0] * len(examples)
    posts: list[list[Tensor]] = [[torch.empty(0)] * len(r.data.locality) for r in replays]
    grads = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        for group in _chunks(host, [e.pair for e in examples]):
            chunk = [examples[i] for i in group]
            with torch.set_grad_enabled(bool(params)):
                per_example, rows = _chunk_losses(run, chunk)
                loss = (per_example * torch.tensor([e.weight for e in chunk], device=per_example.device)).sum()
                for g, d in zip(grads, torch.autograd.grad(loss, params) if params else (), strict=True):
                    g += d.float()
            for i, e, v, r in zip(group, chunk, per_example.tolist(), rows, strict=True):
                values[i] = v
                if e.ref is not None:
                    posts[e.key[0]][e.key[1]] = r
    finally:
        for p in params:
            p.requires_grad_(False)
    return _summary(examples, values, posts), grads


def _summary(examples: list[_Example], values: list[float], posts: list[list[Tensor]]) -> MetaLoss:
    total = sum(e.weight * v for e, v in zip(examples, values, strict=True))
    ce = [v for e, v in zip(examples, values, strict=True) if e.key[0] == 0 and e.ref is None]
    kl = [v for e, v in zip(examples, values, strict=True) if e.key[0] == 0 and e.ref is not None]
    return MetaLoss(loss=total, rephrase_ce=sum(ce) / len(ce), locality_kl=sum(kl) / len(kl), posts=posts)
