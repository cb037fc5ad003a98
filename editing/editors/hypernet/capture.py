"""The state of a turn: keys K and value-gradients Δ of every edited module (docs/hypernet.md §1).

One forward and one backward pass over the edit prompts. A forward pre-hook records each
module's input at the answer-predicting positions and lifts the input by a zero leaf, so the
module's full backward hook fires and records ∂L/∂output at the same positions. Nothing about
the model changes: no parameter requires grad and no .grad is written.

Loss reduction (the δ scale): the NLL of each edit is averaged over that edit's answer tokens
and the edits are summed. A token's δ therefore depends on its own edit only, not on how many
edits share the batch, so a network trained on turns of n edits sees the same δ scale when the
service edits 1…16 facts per revision. Training and edit time use this same function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from editing.host import TokenBatch


@dataclass(frozen=True)
class Factors:
    """K (N, d_k) and Δ (N, d_v) of one module, fp32, rows at answer-predicting positions."""

    keys: Tensor
    grads: Tensor


def answer_logits(model: nn.Module, tokens: TokenBatch) -> Tensor:
    """(N, V) fp32 logits at the positions that predict answer tokens, in (row, position) order.

    The vocabulary projection runs on those N rows only (the body still sees every token).
    """
    mask = tokens.target_mask  # (B, L-1)
    decoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
    get_head = getattr(model, "get_output_embeddings", None)
    head: nn.Module | None = get_head() if callable(get_head) else None
    softcap = getattr(getattr(model, "config", None), "final_logit_softcapping", None)
    if decoder is None or head is None or softcap:
        out = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        return out.logits[:, :-1][mask].float()
    hidden = decoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
    return head(hidden[:, :-1][mask]).float()  # (N, V)


def answer_rows(tokens: TokenBatch) -> tuple[Tensor, Tensor]:
    """(example index (N,), label id (N,)) of every answer-predicting position."""
    mask = tokens.target_mask  # (B, L-1)
    example = mask.nonzero()[:, 0]  # (N,)
    labels = tokens.labels[:, 1:][mask]  # (N,)
    return example, labels


def per_example_mean(values: Tensor, example: Tensor, n_examples: int) -> Tensor:
    """(B,) mean of `values` (N,) over the rows of each example."""
    sums = values.new_zeros(n_examples).index_add(0, example, values)
    counts = values.new_zeros(n_examples).index_add(0, example, torch.ones_like(values))
    return sums / counts.clamp_min(1)


def edit_nll(logits: Tensor, tokens: TokenBatch) -> Tensor:
    """Σ over edits of the edit's mean answer-token NLL (a scalar); `logits` from answer_logits."""
    example, labels = answer_rows(tokens)
    nll = -torch.log_softmax(logits, dim=-1).gather(-1, labels[:, None]).squeeze(-1)  # (N,)
    return per_example_mean(nll, example, tokens.input_ids.shape[0]).sum()


class _Recorder:
    """Hooks on one module that keep its input and output-gradient rows at the answer positions."""

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask  # (B, L-1)
        self.keys: Tensor | None = None
        self.grads: Tensor | None = None

    def pre(self, module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        x = args[0]  # (B, L, d_k)
        self.keys = x[:, :-1][self.mask].detach().float()  # (N, d_k)
        lift = torch.zeros((), dtype=x.dtype, device=x.device, requires_grad=True)
        return (x + lift, *args[1:])

    def backward(self, module: nn.Module, grad_in: object, grad_out: tuple[Tensor, ...]) -> None:
        self.grads = grad_out[0][:, :-1][self.mask].detach().float()  # (N, d_v)


@contextmanager
def _hooked(model: nn.Module, modules: list[str], mask: Tensor) -> Iterator[dict[str, _Recorder]]:
    recorders = {name: _Recorder(mask) for name in modules}
    handles = []
    try:
        for name, rec in recorders.items():
            module = model.get_submodule(name)
            handles.append(module.register_forward_pre_hook(rec.pre))
            handles.append(module.register_full_backward_hook(rec.backward))
        yield recorders
    finally:
        for handle in handles:
            handle.remove()


def collect(model: nn.Module, modules: list[str], tokens: TokenBatch, sites: Tensor | None = None
            ) -> tuple[dict[str, Factors], float]:
    """(K, Δ) of every module from one forward+backward of `edit_nll`, and the loss value.

    `sites` (B, L-1) says where rows are read: the answer-predicting positions by default, or
    one position per edit (its subject's last token, anchors.position_mask)."""
    where = tokens.target_mask if sites is None else sites
    with _hooked(model, modules, where) as recorders, torch.enable_grad():
        loss = edit_nll(answer_logits(model, tokens), tokens)
        loss.backward()
    n = int(where.sum())
    out: dict[str, Factors] = {}
    for name, rec in recorders.items():
        assert rec.keys is not None and rec.grads is not None, f"hooks on {name} did not fire"
        assert rec.keys.shape[0] == rec.grads.shape[0] == n, f"{name}: K and Δ disagree on N"
        out[name] = Factors(keys=rec.keys, grads=rec.grads)
    return out, float(loss.detach())
