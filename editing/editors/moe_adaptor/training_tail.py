"""Cheap training: cache what enters the edited layer once per batch, then run only the tail.

The base model is frozen and the bypass sits at layer l, so per step only layers l+1 … L-1, the
final norm and the LM head at the target positions run:

    h_l' = h_l + scale * bypass(x_l)        x_l: MLP input of layer l, h_l: its output without bypass

This holds for blocks whose MLP output is added straight to the residual stream (Llama, Mistral,
Qwen2/3, Phi-3, OLMo). `tail_matches_model` checks it on the loaded model at attach time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from editing.editors.moe_adaptor.layer import MoEAdaptorLayer
from editing.host import TokenBatch
from editing.layers import StopForwardError, decoder_layers, final_norm, forward_until_stopped


@dataclass(frozen=True)
class Prefix:
    """Activations of one token batch at the edited layer, without any bypass."""

    x: Tensor  # (B, L, d) MLP input of layer l
    h: Tensor  # (B, L, d) output of layer l
    layer_kwargs: dict[str, Any]  # what the model passed to layer l (mask, position embeddings)
    rows: Tensor  # (T,) batch row of each target token
    cols: Tensor  # (T,) position whose logits predict it
    labels: Tensor  # (T,) the target tokens


@torch.no_grad()
def capture_prefix(model: nn.Module, *, layer: int, wrapper: MoEAdaptorLayer, tokens: TokenBatch) -> Prefix:
    """Run layers 0 … l once (as the base model) and keep what the tail needs."""
    seen: dict[str, Any] = {}
    block = decoder_layers(model)[layer]

    def before_block(_m: nn.Module, _a: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        seen["kwargs"] = dict(kwargs)

    def at_mlp(_m: nn.Module, args: tuple[Any, ...], _out: Tensor) -> None:
        seen["x"] = args[0]

    def after_block(_m: nn.Module, _a: tuple[Any, ...], out: Any) -> None:
        seen["h"] = out[0] if isinstance(out, tuple) else out
        raise StopForwardError

    handles = [
        block.register_forward_pre_hook(before_block, with_kwargs=True),
        wrapper.base_layer.register_forward_hook(at_mlp),
        block.register_forward_hook(after_block),
    ]
    with wrapper.moe_context.suspend():
        forward_until_stopped(
            lambda: model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, use_cache=False), handles
        )
    kwargs = {k: v for k, v in seen["kwargs"].items() if k not in ("past_key_values", "cache", "use_cache")}
    rows, cols = tokens.target_mask.nonzero(as_tuple=True)  # (T,), (T,)
    return Prefix(
        x=seen["x"],
        h=seen["h"],
        layer_kwargs=kwargs,
        rows=rows,
        cols=cols,
        labels=tokens.labels[rows, cols + 1],
    )


def tail_logits(model: nn.Module, *, layer: int, prefix: Prefix, bypass: Tensor | None) -> Tensor:
    """(T, V) fp32 logits at the target positions with `bypass` (B, L, d) added at layer l."""
    h = prefix.h if bypass is None else prefix.h + bypass.to(prefix.h.dtype)
    for block in decoder_layers(model)[layer + 1 :]:
        out = block(h, **prefix.layer_kwargs)
        h = out[0] if isinstance(out, tuple) else out
    picked = final_norm(model)(h[prefix.rows, prefix.cols])  # (T, d)
    head = model.get_output_embeddings()  # type: ignore[operator]
    assert isinstance(head, nn.Module)
    return head(picked).float()


def target_nll(logits: Tensor, prefix: Prefix) -> Tensor:
    """Mean negative log-likelihood of the target tokens. logits (T, V)."""
    return torch.nn.functional.cross_entropy(logits, prefix.labels)


@torch.no_grad()
def tail_matches_model(model: nn.Module, *, layer: int, wrapper: MoEAdaptorLayer, tokens: TokenBatch) -> bool:
    """Whether the cached tail reproduces the model's own logits (checked once at attach)."""
    prefix = capture_prefix(model, layer=layer, wrapper=wrapper, tokens=tokens)
    with wrapper.moe_context.suspend():
        full = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, use_cache=False).logits
    expected = full.float()[prefix.rows, prefix.cols]
    got = tail_logits(model, layer=layer, prefix=prefix, bypass=None)
    tolerance = 1e-3 if prefix.h.dtype == torch.float32 else 5e-2
    return bool(torch.allclose(got, expected, atol=tolerance, rtol=tolerance))
