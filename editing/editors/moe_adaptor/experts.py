"""SwiGLU experts as plain tensors, so the served layer and the training loop share one function."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as nnf

EXPERT_FIELDS = ("gate_proj", "up_proj", "down_proj")


def swiglu(x: Tensor, gate: Tensor, up: Tensor, down: Tensor) -> Tensor:
    """down(SiLU(gate x) * up x).  x (N, d); gate, up (r, d); down (d, r) -> (N, d)."""
    return nnf.linear(nnf.silu(nnf.linear(x, gate)) * nnf.linear(x, up), down)


def init_expert(*, d: int, width: int, generator: torch.Generator, count: int | None = None) -> dict[str, Tensor]:
    """fp32 expert weights; down is zero so a fresh expert adds nothing (LoRA-style).

    With `count`, the weights of `count` experts stacked on a leading axis: (E, r, d) ...
    """
    lead = () if count is None else (count,)
    std = d**-0.5
    return {
        "gate_proj": torch.randn(*lead, width, d, generator=generator) * std,  # (E?, r, d)
        "up_proj": torch.randn(*lead, width, d, generator=generator) * std,  # (E?, r, d)
        "down_proj": torch.zeros(*lead, d, width),  # (E?, d, r)
    }


def top_k_gate(logits: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(weights, indices), each (..., k), of the k best experts.

    k = 1: the kept expert's softmax probability over all experts (Switch style), so the gate
    still gets a gradient; k > 1: softmax over the kept logits only.
    """
    if k == 1:
        probs = torch.softmax(logits.float(), dim=-1)
        weight, index = probs.max(dim=-1, keepdim=True)
        return weight.to(logits.dtype), index
    top, index = logits.topk(k, dim=-1)
    return torch.softmax(top.float(), dim=-1).to(logits.dtype), index


def dispatch(x: Tensor, weights: Tensor, index: Tensor, experts: dict[str, Tensor]) -> Tensor:
    """Sum of the chosen experts' outputs per token.

    x (N, d); weights, index (N, k); experts stacked (E, r, d)/(E, d, r) -> (N, d).
    Only the tokens routed to an expert go through it.
    """
    out = torch.zeros_like(x)
    for e in range(experts["down_proj"].shape[0]):
        chosen = index == e  # (N, k)
        tokens = chosen.any(dim=-1).nonzero().squeeze(-1)  # (n,)
        if tokens.numel() == 0:
            continue
        weight = (weights * chosen).sum(dim=-1)[tokens]  # (n,)
        y = swiglu(x[tokens], experts["gate_proj"][e], experts["up_proj"][e], experts["down_proj"][e])
        out = out.index_add(0, tokens, y * weight.unsqueeze(-1))
    return out
