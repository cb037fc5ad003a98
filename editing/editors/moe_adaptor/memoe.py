"""MEMoE: E shared experts beside one MLP, knowledge-anchor gating, retrained on every batch.

State (`state_tensors`): the gate, the stacked expert weights, and the edits so far (prompt,
target, subject; JSON bytes), whose subjects form the query-time anchor index. The artifact of a
batch is the complete new adaptor state; `apply` installs it and returns `RestoreParams` with
the old one.
"""

from __future__ import annotations

import logging
import random

import torch
from torch import Tensor

from editing.artifacts import EditArtifact
from editing.editors.base import EditBatch, RestoreParams, Undo
from editing.editors.moe_adaptor.adaptor_editor import MoEAdaptorEditor, batch_generator
from editing.editors.moe_adaptor.anchor import unit_rms
from editing.editors.moe_adaptor.codec import json_tensor, tensor_json
from editing.editors.moe_adaptor.config import MEMoEConfig
from editing.editors.moe_adaptor.experts import EXPERT_FIELDS, init_expert
from editing.editors.moe_adaptor.layer import (
    AnchorPlan,
    MEMoELayer,
    Plan,
    memoe_bypass,
    memoe_gate_logits,
    mlp_dims,
)
from editing.editors.moe_adaptor.subjects import SubjectIndex
from editing.editors.moe_adaptor.training_tail import tail_logits, target_nll

logger = logging.getLogger(__name__)

WEIGHT_NAMES = ("gate", *EXPERT_FIELDS)
EDITS = "edits"
Record = dict[str, str]  # {"prompt", "target", "subject"}


class MEMoEEditor(MoEAdaptorEditor):
    name = "memoe"
    version = "1"
    config_cls = MEMoEConfig
    config: MEMoEConfig
    layer: MEMoELayer

    # ---- state ---------------------------------------------------------------------------------
    def _fresh_weights(self, base: torch.nn.Module) -> dict[str, Tensor]:
        """Revision-0 weights (fp32), the same on every run: gate N(0, 0.02^2), zero down projections."""
        d, d_ff = mlp_dims(base)
        generator = torch.Generator().manual_seed(self.config.seed)
        gate_in = d if self.config.gate_input == "anchor" else 2 * d
        gate = torch.randn(self.config.num_experts, gate_in, generator=generator) * 0.02  # (E, gate_in)
        experts = init_expert(
            d=d, width=self.config.expert_dim or d_ff, generator=generator, count=self.config.num_experts
        )
        return {"gate": gate, **experts}

    def _wrap(self, base: torch.nn.Module) -> MEMoELayer:
        if self.config.top_k > self.config.num_experts:
            raise ValueError("top_k cannot exceed num_experts")
        self._records: list[Record] = []
        self._index = SubjectIndex()
        layer = MEMoELayer(
            base_layer=base,
            scale=self.config.scale,
            state=self._fresh_weights(base),
            top_k=self.config.top_k,
            anchor_only=self.config.gate_input == "anchor",
        )
        return layer.to(self.host.device)

    def _reset_adaptor(self) -> None:
        self._install(self._fresh_weights(self.layer.base_layer), [])

    def _install(self, weights: dict[str, Tensor], records: list[Record]) -> None:
        self.layer.load({k: v.to(self.host.device) for k, v in weights.items()})
        self._records = [dict(r) for r in records]
        self._index = SubjectIndex(r["subject"] for r in self._records)

    def state_tensors(self) -> dict[str, Tensor]:
        out = {name: t.detach().float() for name, t in self.layer.weights().items()}
        out[EDITS] = json_tensor(self._records)
        return out

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        if not state:
            self._reset_adaptor()
            return
        self._check_keys(state, "state")
        self._install({k: state[k] for k in WEIGHT_NAMES}, tensor_json(state[EDITS]) or [])

    def _check_keys(self, tensors: dict[str, Tensor], what: str) -> None:
        expected = {*WEIGHT_NAMES, EDITS}
        if set(tensors) != expected:
            raise ValueError(f"memoe {what} must hold exactly {sorted(expected)}, got {sorted(tensors)}")
        for name, current in self.layer.weights().items():
            if tuple(tensors[name].shape) != tuple(current.shape):
                raise ValueError(
                    f"memoe {what} {name} has shape {tuple(tensors[name].shape)}, expected {tuple(current.shape)}"
                )

    # ---- routing -------------------------------------------------------------------------------
    def _plan(self, ids: Tensor | None, mask: Tensor | None, embeds: Tensor | None) -> Plan | None:
        if len(self._index) == 0 or ids is None:
            return None
        matches = self.match(ids, mask, self._index)
        if self.config.fallback == "skip" and not any(matches):
            return None
        anchors = torch.zeros(ids.shape[0], self.layer.moe_experts["down_proj"].shape[1])  # (B, d)
        active = torch.zeros(ids.shape[0], dtype=torch.bool)
        for i, found in enumerate(matches):
            if found is not None:
                anchors[i], active[i] = self.embedder.anchor(found.subject), True
            elif self.config.fallback == "prompt_mean":
                row_mask = None if mask is None else mask[i : i + 1]
                anchors[i] = unit_rms(self.embedder.pooled(ids[i : i + 1], row_mask)[0])
                active[i] = True
        return AnchorPlan(
            anchors=anchors.to(self.host.device),
            active=active.to(self.host.device),
            tokens=self.token_mask(matches, ids.shape),
            later=self.bypass_later,
        )

    @torch.no_grad()
    def routes(self, prompts: list[str]) -> list[str | None]:
        """The top-1 expert (as a string) at each prompt's last token, or None when it skips the bypass."""
        out: list[str | None] = []
        for prompt in prompts:
            tokens = self.host.encode_pairs([(prompt, "")])
            ids = torch.tensor([self.host.encode_prompt(prompt)], device=self.host.device)
            plan = self._plan(ids, None, None)
            if not isinstance(plan, AnchorPlan) or not bool(plan.active[0]):
                out.append(None)
                continue
            x = self.prefix(tokens).x[:, ids.shape[1] - 1 : ids.shape[1]]  # (1, 1, d)
            logits = memoe_gate_logits(
                x, plan.anchors, self.layer.moe_gate, anchor_only=self.config.gate_input == "anchor"
            )  # (1, 1, E)
            out.append(str(int(logits[0, 0].argmax())))
        return out

    # ---- editing -------------------------------------------------------------------------------
    def compute(self, batch: EditBatch) -> EditArtifact:
        subjects = self.subjects(batch)
        new = [
            {"prompt": e.prompt, "target": e.target, "subject": s} for e, s in zip(batch.edits, subjects, strict=True)
        ]
        records = self._merge(new)
        rows = new + self._replay_sample(new, batch)
        weights, steps, loss, usage = self._train(rows, batch_generator(self.config.seed, batch))
        tensors = {k: v.detach().clone() for k, v in weights.items()}
        tensors[EDITS] = json_tensor(records)
        inferred = [s for s, e in zip(subjects, batch.edits, strict=True) if not e.subject]
        return self._artifact(
            tensors,
            batch_id=batch.batch_id,
            steps=steps,
            loss=round(loss, 6),
            trained_rows=len(rows),
            inferred_subjects=inferred,
            expert_usage=usage,
        )

    def _merge(self, new: list[Record]) -> list[Record]:
        """Edits so far plus the new ones; a new edit of the same prompt replaces the old one."""
        prompts = {r["prompt"] for r in new}
        return [r for r in self._records if r["prompt"] not in prompts] + new

    def _replay_sample(self, new: list[Record], batch: EditBatch) -> list[Record]:
        prompts = {r["prompt"] for r in new}
        old = [r for r in self._records if r["prompt"] not in prompts]
        if self.config.replay == 0 or not old:
            return []
        rng = random.Random(int(batch_generator(self.config.seed, batch).initial_seed()))
        return rng.sample(old, min(self.config.replay, len(old)))

    def _train(
        self, rows: list[Record], generator: torch.Generator
    ) -> tuple[dict[str, Tensor], int, float, list[float]]:
        """Retrain gate and experts on `rows` from the current state; the live layer is untouched."""
        tokens = self.host.encode_pairs([(r["prompt"], r["target"]) for r in rows])
        prefix = self.prefix(tokens)
        anchors = self.embedder.anchors([r["subject"] for r in rows]).to(self.host.device)  # (B, d)
        positions = self._train_positions(tokens.input_ids, tokens.attention_mask, [r["subject"] for r in rows])
        params = {k: v.detach().float().clone().requires_grad_(True) for k, v in self.layer.weights().items()}
        optimiser = self.optimiser(list(params.values()))
        loss_value, step = float("inf"), 0
        for step in range(self.config.steps + 1):
            noise = self._noise(prefix.x.shape[:2], generator)
            bypass = memoe_bypass(
                prefix.x.float(),
                anchors,
                params,
                top_k=self.config.top_k,
                anchor_only=self.config.gate_input == "anchor",
                noise=noise,
            )
            if positions is not None:
                bypass = bypass * positions.unsqueeze(-1)
            loss = target_nll(
                tail_logits(self.host.model, layer=self.layer_index, prefix=prefix, bypass=self.config.scale * bypass),
                prefix,
            )
            loss_value = float(loss.item())
            if loss_value < self.config.stop_loss or step == self.config.steps:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        usage = self._usage(prefix.x, anchors, params["gate"], positions)
        return {k: v.detach() for k, v in params.items()}, step, loss_value, usage

    @torch.no_grad()
    def _usage(self, x: Tensor, anchors: Tensor, gate: Tensor, positions: Tensor | None) -> list[float]:
        """Share of the batch's bypassed tokens whose top-1 expert is each expert (the routing histogram)."""
        logits = memoe_gate_logits(x, anchors, gate, anchor_only=self.config.gate_input == "anchor")  # (B, L, E)
        top = logits.argmax(dim=-1)[positions] if positions is not None else logits.argmax(dim=-1).reshape(-1)
        counts = torch.bincount(top.reshape(-1), minlength=self.config.num_experts).float()
        return [round(float(c), 3) for c in counts / counts.sum().clamp(min=1)]

    def _train_positions(self, ids: Tensor, mask: Tensor, subjects: list[str]) -> Tensor | None:
        """(B, L) positions of each training row's own subject (all positions when it is not found)."""
        matches = [self.match(ids[i : i + 1], mask[i : i + 1], SubjectIndex([s]))[0] for i, s in enumerate(subjects)]
        return self.token_mask(matches, ids.shape)

    def _noise(self, shape: torch.Size, generator: torch.Generator) -> Tensor | None:
        if self.config.gate_noise == 0:
            return None
        noise = torch.randn(*shape, self.config.num_experts, generator=generator) * self.config.gate_noise
        return noise.to(self.host.device)

    def apply(self, artifact: EditArtifact) -> Undo:
        self._check_artifact(artifact)
        self._check_keys(artifact.tensors, "artifact")
        undo = RestoreParams(params={}, editor_state={k: v.clone() for k, v in self.state_tensors().items()})
        self.load_state_tensors(artifact.tensors)
        return undo
