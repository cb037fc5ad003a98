"""FT-L editor: the artifact is the dense fp32 change of one weight matrix."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import functional_call

from editing.artifacts import EditArtifact
from editing.editors.base import EditBatch, Editor, RestoreParams, Undo
from editing.editors.ft.config import FTConfig
from editing.host import TokenBatch
from editing.targets import layer_at, mlp_module


class FTEditor(Editor):
    name = "ft"
    version = "1"
    config_cls = FTConfig
    config: FTConfig

    def tracked_parameters(self) -> list[str]:
        return [self._weight_name()]

    def _weight_name(self) -> str:
        if self.config.module:
            return f"{self.config.module}.weight"
        layer = layer_at(self.host.model, self.config.layer_fraction)
        return f"{mlp_module(self.host.model, layer, self.config.projection)}.weight"

    def compute(self, batch: EditBatch) -> EditArtifact:
        name = self._weight_name()
        tokens = self.host.encode_pairs(batch.pairs)
        master = self.host.master(name)  # (d_out, d_in) fp32
        delta = torch.zeros_like(master, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=self.config.lr)
        bound = self.config.norm_constraint
        for _ in range(self.config.steps):
            loss = self._loss(name, master + delta, tokens)
            if loss.item() < self.config.stop_loss:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                delta.clamp_(-bound, bound)
        return self._artifact({f"delta/{name}": delta.detach().clone()}, module=name)

    def _loss(self, name: str, weight: Tensor, tokens: TokenBatch) -> Tensor:
        """Mean NLL of the target tokens with `weight` in place of the served parameter."""
        params = {name: weight.to(self.host.dtype)}
        inputs = {"input_ids": tokens.input_ids, "attention_mask": tokens.attention_mask}
        logits = functional_call(self.host.model, params, args=(), kwargs=inputs).logits.float()
        logp = self.host.token_logprobs(logits, tokens)  # (B, L-1)
        return -logp.sum() / tokens.target_mask.sum()

    def apply(self, artifact: EditArtifact) -> Undo:
        self._check_artifact(artifact)
        undo = RestoreParams(params=self.host.masters())
        for key, delta in artifact.tensors.items():
            name = key.removeprefix("delta/")
            self.host.set_master(name, self.host.master(name) + delta.to(self.host.device))
        return undo
