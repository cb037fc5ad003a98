"""LEMoE: one new expert per batch, earlier experts frozen, top-1 routing by key matching.

State (`state_tensors`): every expert's tensors under `<batch id>/<field>`; `seq` keeps the
insertion order. The artifact of a batch is exactly the new expert (weights, key, projection,
centre, threshold, the batch's routing anchors, subjects and the edits it was trained on);
`apply` inserts it keyed by batch id and returns `RemoveExperts((batch_id,))`.

Routing picks one expert per subject, so a new expert also learns the earlier edits of its
subjects (`_carried`), read from the experts that hold them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from contract.protocol import EditSpec
from contract.subjects import normalise, subject_key
from editing.artifacts import EditArtifact
from editing.editors.base import EditBatch, RemoveExperts, Undo
from editing.editors.moe_adaptor import key_match as keys
from editing.editors.moe_adaptor.adaptor_editor import Match, MoEAdaptorEditor, batch_generator
from editing.editors.moe_adaptor.anchor import unit_rms
from editing.editors.moe_adaptor.calibration import load_prompts
from editing.editors.moe_adaptor.codec import json_tensor, tensor_json
from editing.editors.moe_adaptor.config import LEMoEConfig
from editing.editors.moe_adaptor.layer import LEMOE_FIELDS, ExpertPlan, LEMoELayer, Plan, mlp_dims
from editing.editors.moe_adaptor.lemoe_train import Trainer, TrainingSet
from editing.editors.moe_adaptor.subjects import SubjectIndex

logger = logging.getLogger(__name__)

ARTIFACT_FIELDS = tuple(f for f in LEMOE_FIELDS if f != "seq")


def _with_edits(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """An expert's tensors; state and artifacts saved before experts stored their edits get none."""
    return {"edits": json_tensor([]), **tensors}


class LEMoEEditor(MoEAdaptorEditor):
    name = "lemoe"
    version = "1"
    config_cls = LEMoEConfig
    config: LEMoEConfig
    layer: LEMoELayer

    def _wrap(self, base: torch.nn.Module) -> LEMoELayer:
        self._cache_version = -1
        self._router: dict[str, Tensor] = {}
        self._names: list[str] = []
        self._index = SubjectIndex()
        self._calibration: Tensor | None = None
        return LEMoELayer(base_layer=base, scale=self.config.scale)

    def _reset_adaptor(self) -> None:
        self.layer.clear()

    # ---- state ---------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Tensor]:
        return {f"{bid}/{name}": t for bid, expert in self.layer.ordered() for name, t in expert.tensors().items()}

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        grouped: dict[str, dict[str, Tensor]] = {}
        for key, tensor in state.items():
            batch_id, _, name = key.rpartition("/")
            grouped.setdefault(batch_id, {})[name] = tensor
        grouped = {batch_id: _with_edits(tensors) for batch_id, tensors in grouped.items()}
        for batch_id, tensors in grouped.items():
            self._check_expert(batch_id, tensors, LEMOE_FIELDS)
        self.layer.clear()
        for batch_id, tensors in sorted(grouped.items(), key=lambda kv: int(kv[1]["seq"])):
            self.layer.insert(batch_id, tensors)

    def _check_expert(self, batch_id: str, tensors: dict[str, Tensor], fields: tuple[str, ...]) -> None:
        if not batch_id or "." in batch_id or "/" in batch_id:
            raise ValueError(f"lemoe: unusable batch id {batch_id!r}")
        if set(tensors) != set(fields):
            raise ValueError(f"lemoe expert {batch_id} must hold exactly {sorted(fields)}, got {sorted(tensors)}")
        d, _ = mlp_dims(self.layer.base_layer)
        if tensors["key"].shape != (d,) or tensors["gate_proj"].shape[-1] != d:
            raise ValueError(f"lemoe expert {batch_id} does not fit hidden size {d}")

    # ---- routing -------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Stacked routers, names and subject index of the current experts (cached per version)."""
        if self._cache_version == self.layer.moe_version:
            return
        ordered = self.layer.ordered()
        self._names = [bid for bid, _ in ordered]
        self._router = keys.stack([{k: getattr(e, k) for k in keys.ROUTER} for _, e in ordered]) if ordered else {}
        self._index = SubjectIndex(s for _, e in ordered for s in (tensor_json(e.subjects) or []))
        self._cache_version = self.layer.moe_version

    @property
    def router(self) -> dict[str, Tensor]:
        """The current experts' routing keys, stacked (key_match.ROUTER fields, one row per expert)."""
        self._refresh()
        return self._router

    def instance(
        self, ids: Tensor, mask: Tensor | None, extra: Sequence[str] = ()
    ) -> tuple[Tensor, Tensor, list[Match | None]]:
        """((B, d) instance embeddings, (B,) whether each row is routed at all, subject matches).

        `extra` subjects count as edited (the batch being trained)."""
        pooled = unit_rms(self.embedder.pooled(ids, mask))  # (B, d)
        valid = torch.ones(ids.shape[0], dtype=torch.bool)
        needs_subjects = self.config.routing_input == "subject" or self.config.bypass_tokens != "all"
        matches: list[Match | None] = [None] * ids.shape[0]
        if needs_subjects:
            matches = self.match(ids, mask, self._subjects_with(extra))
        if self.config.routing_input == "prompt_mean":
            return pooled, valid, matches
        for i, found in enumerate(matches):
            if found is not None:
                pooled[i] = self.embedder.anchor(found.subject).to(pooled.device)
            elif self.config.fallback == "skip":
                valid[i] = False
        return pooled, valid, matches

    def _subjects_with(self, extra: Sequence[str]) -> SubjectIndex:
        """The index of every expert's subjects (cached per version), plus `extra` ones."""
        self._refresh()
        if not extra:
            return self._index
        return SubjectIndex([s for _, e in self.layer.ordered() for s in (tensor_json(e.subjects) or [])] + list(extra))

    def _plan(self, ids: Tensor | None, mask: Tensor | None, embeds: Tensor | None) -> Plan | None:
        self._refresh()
        if not self._names or ids is None:
            return None
        e, valid, matches = self.instance(ids, mask)
        if not bool(valid.any()):
            return None
        s = keys.scores(e, self._router)  # (B, t)
        best = s.argmax(dim=-1)  # (B,)
        in_scope = s.gather(1, best.unsqueeze(1)).squeeze(1) >= self._router["tau"][best]
        chosen = tuple(
            self._names[int(b)] if bool(v and ok) else None for b, v, ok in zip(best, valid, in_scope, strict=True)
        )
        if all(c is None for c in chosen):
            return None
        return ExpertPlan(chosen, tokens=self.token_mask(matches, ids.shape), later=self.bypass_later)

    def routes(self, prompts: list[str]) -> list[str | None]:
        """The expert (batch id) each prompt goes to at inference, or None."""
        out: list[str | None] = []
        for prompt in prompts:
            ids = torch.tensor([self.host.encode_prompt(prompt)], device=self.host.device)
            plan = self._plan(ids, None, None)
            out.append(plan.experts[0] if isinstance(plan, ExpertPlan) else None)
        return out

    def calibration(self) -> Tensor:
        """(m, d) pooled embeddings (unit RMS) of the calibration prompts, computed once."""
        if self._calibration is None:
            prompts = load_prompts(self.config.calibration_file)
            rows = [
                self.embedder.pooled(torch.tensor([self.host.encode_prompt(p)], device=self.host.device))
                for p in prompts
            ]
            self._calibration = unit_rms(torch.cat(rows))
        return self._calibration

    # ---- editing -------------------------------------------------------------------------------
    def compute(self, batch: EditBatch) -> EditArtifact:
        self._refresh()
        subjects = self.subjects(batch)
        carried = self._carried(batch, subjects)
        held = EditBatch(batch.batch_id, (*batch.edits, *carried))
        held_subjects = subjects + [str(e.subject) for e in carried]
        trained, trained_subjects = self._training_rows(held, held_subjects)
        data = TrainingSet.build(self, trained, trained_subjects)
        trainer = Trainer(editor=self, data=data, generator=batch_generator(self.config.seed, batch))
        tensors, meta = trainer.run()
        tensors["subjects"] = json_tensor(held_subjects)
        held_rows = [[e.prompt, e.target, s] for e, s in zip(held.edits, held_subjects, strict=True)]
        tensors["edits"] = json_tensor(held_rows)
        inferred = [s for s, e in zip(subjects, batch.edits, strict=True) if not e.subject]
        return self._artifact(
            tensors, batch_id=batch.batch_id, inferred_subjects=inferred, carried=len(carried), **meta
        )

    def _carried(self, batch: EditBatch, subjects: list[str]) -> list[EditSpec]:
        """The earlier experts' edits of the batch's subjects (newest per prompt, none of the batch's
        prompts). Routing picks one expert per subject, so the new expert must hold every current
        fact of its subjects: an edit of Japan's currency after one of its capital keeps the capital."""
        wanted = {subject_key(s) for s in subjects}
        own = {normalise(e.prompt) for e in batch.edits}
        found: dict[str, EditSpec] = {}
        for _, expert in self.layer.ordered():
            for prompt, target, subject in expert.edits_held():
                if subject_key(subject) in wanted and normalise(prompt) not in own:
                    found[normalise(prompt)] = EditSpec(prompt=prompt, target=target, subject=subject)
        return list(found.values())

    def _training_rows(self, batch: EditBatch, subjects: list[str]) -> tuple[EditBatch, list[str]]:
        """The batch, plus (train_chat) each edit as the assistant's answer to its prompt asked in chat."""
        if not (self.config.train_chat and self.host.has_chat_template):
            return batch, subjects
        chat = [e.model_copy(update={"prompt": self.host.chat_form(e.prompt)}) for e in batch.edits]
        return EditBatch(batch.batch_id, (*batch.edits, *chat)), subjects * 2

    def apply(self, artifact: EditArtifact) -> Undo:
        self._check_artifact(artifact)
        batch_id = str(artifact.meta.get("batch_id", ""))
        tensors = _with_edits(artifact.tensors)
        self._check_expert(batch_id, tensors, ARTIFACT_FIELDS)
        if batch_id in self.layer.moe_experts:
            raise ValueError(f"lemoe already holds an expert for batch {batch_id}")
        ordered = self.layer.ordered()
        seq = int(ordered[-1][1].seq.item()) + 1 if ordered else 0
        self.layer.insert(batch_id, {**tensors, "seq": torch.tensor(seq)})
        return RemoveExperts((batch_id,))

    def restore(self, undo: Undo) -> None:
        if not isinstance(undo, RemoveExperts):
            super().restore(undo)
            return
        for batch_id in undo.batch_ids:
            if batch_id in self.layer.moe_experts:
                self.layer.remove(batch_id)
