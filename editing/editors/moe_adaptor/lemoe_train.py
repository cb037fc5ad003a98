"""Training one LEMoE expert: LM loss through the tail, routing cross-entropy, optional scope gate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.nn import functional as nnf

from editing.editors.base import EditBatch
from editing.editors.moe_adaptor import key_match as keys
from editing.editors.moe_adaptor.experts import EXPERT_FIELDS, init_expert, swiglu
from editing.editors.moe_adaptor.layer import LEMoEExpert, mlp_dims
from editing.editors.moe_adaptor.subjects import SubjectIndex
from editing.editors.moe_adaptor.training_tail import Prefix, tail_logits, target_nll

if TYPE_CHECKING:
    from editing.editors.moe_adaptor.lemoe import LEMoEEditor

SCOPE_MARGIN = 0.1
ROUTE_LR = 3e-3  # learning-rate cap of the router-only steps
MAX_ROUTING_STEPS = 300


@dataclass
class TrainingSet:
    """Everything one batch's training reads, computed once (no gradients)."""

    prefix: Prefix
    positives: Tensor  # (P, d) instance embeddings of the prompts and of prompt+target
    negatives: Tensor  # (m, d) calibration prompts
    old_pos: Tensor  # (P, t) frozen experts' scores of the positives
    old_anchor: Tensor  # (k, t) frozen experts' scores of their own stored anchors
    owners: Tensor  # (k,) index of each stored anchor's expert
    anchors: Tensor  # (k, d) the earlier experts' stored anchors (negatives for the new key)
    old_out: Tensor  # (t, B, L, d) frozen experts' outputs on the batch (soft mixture only)
    prompt_rows: int  # the first prompt_rows positives are prompt-only (what generation sees)
    positions: Tensor | None  # (B, L) bool positions that get the bypass (None = all)

    @classmethod
    def build(cls, editor: LEMoEEditor, batch: EditBatch, subjects: list[str]) -> TrainingSet:
        host = editor.host
        tokens = host.encode_pairs(batch.pairs)
        prompt_ids, prompt_mask = _pad(
            [host.encode_prompt(e.prompt) for e in batch.edits], int(host.tokenizer.pad_token_id), host.device
        )
        e_p, _, _ = editor.instance(prompt_ids, prompt_mask, subjects)
        e_pt, _, _ = editor.instance(tokens.input_ids, tokens.attention_mask, subjects)
        matches = [
            editor.match(tokens.input_ids[i : i + 1], tokens.attention_mask[i : i + 1], SubjectIndex([s]))[0]
            for i, s in enumerate(subjects)
        ]
        positives = torch.cat([e_p, e_pt])  # (2n, d)
        experts = [e for _, e in editor.layer.ordered()]
        t = len(experts)
        anchors = torch.cat([e.anchors for e in experts]) if experts else positives[:0]
        owners = (
            torch.cat([torch.full((e.anchors.shape[0],), i) for i, e in enumerate(experts)])
            if experts
            else torch.zeros(0, dtype=torch.long)
        )
        anchors, owners = _without(anchors, owners, positives)
        router = editor.router
        prefix = editor.prefix(tokens)
        with torch.no_grad():
            old_out = (
                torch.stack([_expert_out(e, prefix.x) for e in experts])
                if t and editor.config.train_mixture == "soft"
                else prefix.x.new_zeros(0)
            )
            return cls(
                prefix=prefix,
                positives=positives,
                negatives=editor.calibration(),
                old_pos=keys.scores(positives, router) if t else positives.new_zeros(len(positives), 0),
                old_anchor=keys.scores(anchors, router) if t else positives.new_zeros(0, 0),
                owners=owners.to(positives.device),
                anchors=anchors,
                old_out=old_out,
                prompt_rows=len(e_p),
                positions=editor.token_mask(matches, tokens.input_ids.shape),
            )


def _without(anchors: Tensor, owners: Tensor, positives: Tensor) -> tuple[Tensor, Tensor]:
    """Drop stored anchors that are (almost) one of the new positives: a subject edited again
    belongs to the new expert, so its old anchor must not push the new key away."""
    if anchors.numel() == 0:
        return anchors, owners
    similarity = nnf.normalize(anchors, dim=-1) @ nnf.normalize(positives, dim=-1).T  # (k, P)
    keep = similarity.max(dim=1).values < 0.999
    return anchors[keep], owners[keep.to(owners.device)]


def _pad(rows: list[list[int]], pad: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-padded (B, L) ids and mask."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return ids.to(device), mask.to(device)


def _expert_out(expert: LEMoEExpert, x: Tensor) -> Tensor:
    """(B, L, d) fp32 output of a frozen expert."""
    return expert.forward_expert(x.reshape(-1, x.shape[-1])).reshape(x.shape).float()


class Trainer:
    """Optimises a new expert with its key and projection; the live layer is never touched."""

    def __init__(self, *, editor: LEMoEEditor, data: TrainingSet, generator: torch.Generator) -> None:
        self.editor, self.config, self.data = editor, editor.config, data
        d = data.prefix.x.shape[-1]
        width = self.config.expert_dim or mlp_dims(editor.layer.base_layer)[1]
        router = keys.new_router(
            positives=data.positives[: data.prompt_rows],
            center=data.negatives.mean(dim=0),
            ratio=self.config.proj_ratio,
            generator=generator,
        )
        self.fixed = {"center": router.pop("center").to(data.positives.device)}
        router.pop("tau")
        expert = init_expert(d=d, width=width, generator=generator)
        self.params = {k: v.to(data.positives.device).requires_grad_(True) for k, v in {**router, **expert}.items()}
        self.t = data.old_pos.shape[1]

    def router(self) -> dict[str, Tensor]:
        return {
            "center": self.fixed["center"],
            "key": self.params["key"],
            "proj_down": self.params["proj_down"],
            "proj_up": self.params["proj_up"],
            "tau": torch.tensor(-2.0),
        }

    def routing_loss(self, s_pos: Tensor) -> Tensor:
        temp = self.config.route_temperature
        logits = torch.cat([self.data.old_pos, s_pos.unsqueeze(1)], dim=1) / temp  # (P, t+1)
        loss = nnf.cross_entropy(logits, torch.full((len(s_pos),), self.t, device=s_pos.device))
        if self.data.owners.numel():
            s_old = keys.score_one(self.data.anchors, self.router())  # (k,)
            logits = torch.cat([self.data.old_anchor, s_old.unsqueeze(1)], dim=1) / temp
            loss = loss + nnf.cross_entropy(logits, self.data.owners)
        if self.config.threshold:
            s_neg = keys.score_one(self.data.negatives, self.router())  # (m,)
            gap = s_neg.unsqueeze(1) - s_pos.unsqueeze(0) + SCOPE_MARGIN  # (m, P)
            loss = loss + nnf.softplus(gap / temp).mean()
        return loss

    def bypass(self, s_pos: Tensor) -> Tensor:
        """(B, L, d) fp32: the new expert alone (hard) or the soft mixture over all experts."""
        x = self.data.prefix.x.float()
        new = swiglu(x.reshape(-1, x.shape[-1]), *(self.params[k] for k in EXPERT_FIELDS)).reshape(x.shape)
        mask = 1.0 if self.data.positions is None else self.data.positions.unsqueeze(-1)  # (B, L, 1)
        if self.config.train_mixture == "hard" or self.t == 0:
            return new * mask
        n = self.data.prompt_rows
        logits = torch.cat([self.data.old_pos[:n], s_pos[:n].unsqueeze(1)], dim=1)  # (B, t+1)
        g = torch.softmax(logits / self.config.route_temperature, dim=1)  # (B, t+1)
        old = torch.einsum("bt,tbld->bld", g[:, : self.t], self.data.old_out)
        return (old + g[:, self.t, None, None] * new) * mask

    def routed_right(self, s_pos: Tensor) -> Tensor:
        """(P,) whether each positive's top-1 expert is the new one."""
        return (
            (s_pos.unsqueeze(1) > self.data.old_pos).all(dim=1) if self.t else torch.ones_like(s_pos, dtype=torch.bool)
        )

    @torch.no_grad()
    def keeps_old(self) -> float:
        """Share of the earlier experts' anchors (that their owner wins) the new expert leaves alone."""
        if not self.data.owners.numel():
            return 1.0
        owner = self.data.old_anchor.gather(1, self.data.owners.unsqueeze(1)).squeeze(1)  # (k,)
        won = owner >= self.data.old_anchor.max(dim=1).values
        s_new = keys.score_one(self.data.anchors, self.router())  # (k,)
        return float(((s_new < owner) | ~won).float().mean())

    def run(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        optimiser = self.editor.optimiser(list(self.params.values()))
        lm_value, step = float("inf"), 0
        for step in range(self.config.steps + 1):
            s_pos = keys.score_one(self.data.positives, self.router())  # (P,)
            lm = target_nll(
                tail_logits(
                    self.editor.host.model,
                    layer=self.editor.layer_index,
                    prefix=self.data.prefix,
                    bypass=self.config.scale * self.bypass(s_pos),
                ),
                self.data.prefix,
            )
            lm_value = float(lm.item())
            routed = bool(self.routed_right(s_pos.detach()).all())
            if (lm_value < self.config.stop_loss and routed) or step == self.config.steps:
                break
            loss = lm + self.config.route_weight * self.routing_loss(s_pos)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        polish = self.polish_routing()
        tensors, meta = self.finish(step, lm_value)
        return tensors, {**meta, "routing_steps": polish, "old_anchors_kept": round(self.keeps_old(), 4)}

    def polish_routing(self) -> int:
        """Router-only steps (no LM forward, so cheap) until every positive routes to the new expert.

        The joint loop can end with the LM loss met but some of the batch's inputs still scored
        higher by an earlier expert (seen at high learning rates); top-1 would then send them to an
        expert that never learnt them. Returns the steps taken.
        """
        names = ("key", "proj_down", "proj_up")
        optimiser = torch.optim.AdamW([self.params[k] for k in names], lr=min(self.config.lr, ROUTE_LR))
        for step in range(MAX_ROUTING_STEPS):
            s_pos = keys.score_one(self.data.positives, self.router())
            if bool(self.routed_right(s_pos.detach()).all()) and self.keeps_old() == 1.0:
                return step
            optimiser.zero_grad()
            self.routing_loss(s_pos).backward()
            optimiser.step()
        return MAX_ROUTING_STEPS

    @torch.no_grad()
    def finish(self, steps: int, lm_value: float) -> tuple[dict[str, Tensor], dict[str, Any]]:
        router = self.router()
        s_pos = keys.score_one(self.data.positives, router)
        tau, false_rate = self.calibrate(s_pos)
        tensors = {k: v.detach().clone() for k, v in self.params.items()}
        tensors.update(center=self.fixed["center"].clone(), tau=torch.tensor(tau), anchors=self.data.positives.clone())
        meta = {
            "steps": steps,
            "loss": round(lm_value, 6),
            "tau": round(tau, 6),
            "routing_accuracy": round(float(self.routed_right(s_pos).float().mean()), 4),
            "false_activation": round(false_rate, 4),
        }
        return tensors, meta

    def calibrate(self, s_pos: Tensor) -> tuple[float, float]:
        """(threshold, share of calibration prompts at or above it); -2 = no threshold."""
        if not self.config.threshold:
            return -2.0, 1.0
        s_neg = keys.score_one(self.data.negatives, self.router())
        tau = float(torch.quantile(s_neg, 1.0 - self.config.threshold_alpha))
        tau = min(tau, float(s_pos.min()) - 1e-4)  # keep every in-scope prompt (WISE's rule)
        return tau, float((s_neg >= tau).float().mean())
