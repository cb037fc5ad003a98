"""Training-only shortcut: the layers below the lowest edited module never change during
meta-training, so the hidden state entering that layer is computed once per example and the
forward passes of the meta-loss start there.

Used only for model types whose decoder feeds `inputs_embeds` to the first layer unchanged
(Llama family); anything else runs the plain forward. Not used at edit time.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from editing.editors.hypernet.capture import answer_logits
from editing.host import ModelHost, TokenBatch
from editing.layers import StopForwardError, forward_until_stopped
from editing.targets import layer_path

SAFE_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "olmo"})
Pair = tuple[str, str]


def lowest_layer(model: nn.Module, modules: list[str]) -> int:
    pattern = re.compile(rf"^{re.escape(layer_path(model))}\.(\d+)\.")
    found = [int(m.group(1)) for m in map(pattern.match, modules) if m]
    return min(found) if len(found) == len(modules) else 0


class PrefixCache:
    """Answer-position logits for (prompt, continuation) pairs, starting at layer `start`."""

    def __init__(self, host: ModelHost, modules: list[str]) -> None:
        self.host = host
        model = host.model
        self.start = lowest_layer(model, modules)
        model_type = getattr(getattr(model, "config", None), "model_type", "")
        self.decoder = getattr(model, getattr(model, "base_model_prefix", ""), None)
        self.enabled = model_type in SAFE_TYPES and self.start > 0 and self.decoder is not None
        self._store: dict[Pair, Tensor] = {}

    def clear(self) -> None:
        self._store.clear()

    def logits(self, pairs: list[Pair]) -> tuple[Tensor, TokenBatch]:
        """((N, V) fp32 logits at the answer positions, the token batch)."""
        tokens = self.host.encode_pairs(pairs)
        if not self.enabled:
            return answer_logits(self.host.model, tokens), tokens
        hidden = self._prefixes(pairs, tokens)  # (B, L, d)
        last = self._run_from(hidden, tokens)  # (B, L, d)
        head: nn.Module = getattr(self.host.model, "get_output_embeddings")()  # noqa: B009
        return head(last[:, :-1][tokens.target_mask]).float(), tokens

    def _prefixes(self, pairs: list[Pair], tokens: TokenBatch) -> Tensor:
        missing = [p for p in dict.fromkeys(pairs) if p not in self._store]
        if missing:
            self._compute(missing)
        batch, width = tokens.input_ids.shape
        first = self._store[pairs[0]]
        out = first.new_zeros(batch, width, first.shape[-1])  # (B, L, d); padding stays zero (masked)
        for i, pair in enumerate(pairs):
            stored = self._store[pair]
            out[i, : stored.shape[0]] = stored
        return out

    @torch.no_grad()
    def _compute(self, pairs: list[Pair]) -> None:
        tokens = self.host.encode_pairs(pairs)
        captured: list[Tensor] = []

        def capture(module: nn.Module, args: tuple[Tensor, ...], kwargs: dict[str, Tensor]) -> None:
            captured.append(args[0] if args else kwargs["hidden_states"])
            raise StopForwardError

        layer = self.decoder.layers[self.start]  # type: ignore[union-attr, index]
        handle = layer.register_forward_pre_hook(capture, with_kwargs=True)
        forward_until_stopped(
            lambda: self.decoder(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask),  # type: ignore[misc]
            [handle],
        )
        lengths = tokens.attention_mask.sum(dim=1).tolist()
        for i, pair in enumerate(pairs):
            self._store[pair] = captured[0][i, : int(lengths[i])].detach()  # (L_i, d)

    def _run_from(self, hidden: Tensor, tokens: TokenBatch) -> Tensor:
        decoder = self.decoder
        layers = decoder.layers  # type: ignore[union-attr]
        decoder.layers = nn.ModuleList(list(layers)[self.start :])  # type: ignore[union-attr]
        try:
            out = decoder(inputs_embeds=hidden, attention_mask=tokens.attention_mask)  # type: ignore[misc]
        finally:
            decoder.layers = layers  # type: ignore[union-attr]
        return out.last_hidden_state
