"""What MEMoE and LEMoE share: wrapping the layer, the prefill hook, subjects, training set-up."""

from __future__ import annotations

import hashlib
import json
import logging
from abc import abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

from contract.errors import TargetNotFoundError
from contract.protocol import EditSpec
from editing.editors.base import EditBatch, Editor
from editing.editors.moe_adaptor.anchor import AnchorEmbedder
from editing.editors.moe_adaptor.config import MoEAdaptorConfig
from editing.editors.moe_adaptor.layer import MoEAdaptorLayer, Plan
from editing.editors.moe_adaptor.positions import char_spans, span_mask
from editing.editors.moe_adaptor.routing import PrefillHook
from editing.editors.moe_adaptor.subjects import SubjectIndex, infer_subject
from editing.editors.moe_adaptor.training_tail import Prefix, capture_prefix, tail_matches_model
from editing.host import TokenBatch
from editing.targets import layer_at, layer_path, num_layers

logger = logging.getLogger(__name__)


def subject_of(spec: EditSpec) -> tuple[str, bool]:
    """(subject, inferred): the given subject, else one inferred from the prompt, else the prompt."""
    if spec.subject and spec.subject.strip():
        return " ".join(spec.subject.split()), False
    inferred = infer_subject(spec.prompt)
    return " ".join((inferred or spec.prompt).split()), True


def batch_generator(seed: int, batch: EditBatch) -> torch.Generator:
    """A CPU generator seeded by the config seed and the batch's edits (not its id), so compute()
    is a deterministic function of the adaptor state and the edits: a revert that re-runs an
    edit under a new batch id gets the same weights."""
    content = json.dumps([[e.prompt, e.target, e.subject] for e in batch.edits])
    digest = hashlib.sha256(f"{seed}:{content}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


@dataclass(frozen=True)
class Match:
    """The edited subject an input mentions, and the positions that get the bypass (None = all)."""

    subject: str
    tokens: Tensor | None  # (L,) bool over the padded row


class MoEAdaptorEditor(Editor):
    """Wraps one MLP at attach; the adaptor is the only state an edit changes."""

    config: MoEAdaptorConfig
    layer: MoEAdaptorLayer

    def tracked_parameters(self) -> list[str]:
        return []  # base weights never change

    @property
    def layer_index(self) -> int:
        if self.config.layer is not None:
            if self.config.layer >= num_layers(self.host.model):
                raise TargetNotFoundError(f"the model has no layer {self.config.layer}", field="layer")
            return self.config.layer
        return layer_at(self.host.model, self.config.layer_fraction)

    def attach(self) -> None:
        super().attach()
        self.embedder = AnchorEmbedder(self.host)
        block = self.host.model.get_submodule(f"{layer_path(self.host.model)}.{self.layer_index}")
        base = block.get_submodule("mlp")
        self.layer = self._wrap(base)
        block.mlp = self.layer
        self._hook = PrefillHook(context=self.layer.moe_context, planner=self._plan).install(self.host.model)
        self.host.on_rows_selected(self.layer.moe_context.select)  # finished rows leave a decoding batch
        probe = self.host.encode_pairs([("The capital of France is", "Paris")])
        if not tail_matches_model(self.host.model, layer=self.layer_index, wrapper=self.layer, tokens=probe):
            raise TargetNotFoundError(
                f"{self.name} cannot train on {type(self.host.model).__name__}: "
                "its MLP output is not added straight to the residual stream"
            )
        logger.info("%s wraps %s.%d.mlp", self.name, layer_path(self.host.model), self.layer_index)

    @abstractmethod
    def _wrap(self, base: torch.nn.Module) -> MoEAdaptorLayer:
        """The wrapper around the frozen MLP, in its initial (revision 0) state."""

    @abstractmethod
    def _plan(self, ids: Tensor | None, mask: Tensor | None, embeds: Tensor | None) -> Plan | None:
        """The routing of a batch of sequences at prefill; None = base model for all of them."""

    def reset(self) -> None:
        super().reset()
        self._reset_adaptor()

    @abstractmethod
    def _reset_adaptor(self) -> None:
        """Back to the adaptor of revision 0."""

    def subjects(self, batch: EditBatch) -> list[str]:
        out = []
        for spec in batch.edits:
            subject, inferred = subject_of(spec)
            if inferred:
                logger.info("batch %s: inferred subject %r for prompt %r", batch.batch_id, subject, spec.prompt)
            out.append(subject)
        return out

    def match(self, ids: Tensor, mask: Tensor | None, index: SubjectIndex) -> list[Match | None]:
        """Per row of ids (B, L): the longest edited subject it mentions (with its positions), or None."""
        out: list[Match | None] = []
        for i in range(ids.shape[0]):
            real = torch.ones(ids.shape[1], dtype=torch.bool) if mask is None else mask[i].bool().cpu()
            row = ids[i].cpu()[real].tolist()
            text = str(self.host.tokenizer.decode(row, skip_special_tokens=True))
            found = index.find(text)
            if found is None or self.config.bypass_tokens == "all":
                out.append(None if found is None else Match(found[0], None))
                continue
            _, spans = char_spans(self.host.tokenizer, row)
            tokens = torch.zeros(ids.shape[1], dtype=torch.bool)
            tokens[real] = span_mask(spans, found[1], found[2], self.config.bypass_tokens)
            out.append(Match(found[0], tokens))
        return out

    def token_mask(self, matches: list[Match | None], shape: torch.Size) -> Tensor | None:
        """(B, L) bool positions that get the bypass (rows without a subject: all); None = all everywhere."""
        if self.config.bypass_tokens == "all" or all(m is None or m.tokens is None for m in matches):
            return None
        rows = [
            m.tokens if m is not None and m.tokens is not None else torch.ones(shape[1], dtype=torch.bool)
            for m in matches
        ]
        return torch.stack(rows).to(self.host.device)

    @property
    def bypass_later(self) -> bool:
        """Whether generated tokens get the bypass."""
        return self.config.bypass_tokens != "subject"

    def prefix(self, tokens: TokenBatch) -> Prefix:
        return capture_prefix(self.host.model, layer=self.layer_index, wrapper=self.layer, tokens=tokens)

    def optimiser(self, params: list[Tensor]) -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
