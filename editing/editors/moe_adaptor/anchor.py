"""Embeddings the routers use: knowledge anchors (subjects) and mean-pooled prompts.

Both come from the model's (frozen) input-embedding table, so they never change while the
model is served. Anchors are rescaled to unit RMS, like the normalised hidden states they sit
beside in the MEMoE gate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from editing.host import ModelHost


def unit_rms(v: Tensor, eps: float = 1e-6) -> Tensor:
    """Rescale the last axis to root-mean-square 1."""
    return v / v.pow(2).mean(dim=-1, keepdim=True).add(eps).sqrt()


class AnchorEmbedder:
    """Subject -> anchor vector (cached), and mean-pooled embeddings of token rows."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self._cache: dict[str, Tensor] = {}

    @property
    def table(self) -> Tensor:
        """(V, d) input embeddings."""
        embeddings = self.host.model.get_input_embeddings()  # type: ignore[operator]
        assert isinstance(embeddings, torch.nn.Embedding)
        return embeddings.weight

    def anchor(self, subject: str) -> Tensor:
        """(d,) fp32: mean embedding of the subject's tokens (as written after a space), unit RMS."""
        vector = self._cache.get(subject)
        if vector is None:
            ids = self.host.tokenizer(" " + subject.strip(), add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                rows = self.table[torch.tensor(ids, device=self.table.device)].float()  # (n, d)
            vector = unit_rms(rows.mean(dim=0))
            self._cache[subject] = vector
        return vector

    def anchors(self, subjects: list[str]) -> Tensor:
        """(B, d) fp32."""
        return torch.stack([self.anchor(s) for s in subjects])

    @torch.no_grad()
    def pooled(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, d) fp32 mean input embedding of each row's real tokens. ids, mask (B, L)."""
        emb = self.table[ids].float()  # (B, L, d)
        return self.pool_embeddings(emb, mask)

    @staticmethod
    def pool_embeddings(emb: Tensor, mask: Tensor | None) -> Tensor:
        """(B, d) masked mean over the sequence axis of emb (B, L, d)."""
        if mask is None:
            return emb.float().mean(dim=1)
        m = mask.to(emb.device, torch.float32).unsqueeze(-1)  # (B, L, 1)
        return (emb.float() * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)

    def texts(self, ids: Tensor, mask: Tensor | None) -> list[str]:
        """Decoded text of each row's real tokens."""
        out = []
        for i in range(ids.shape[0]):
            row = ids[i] if mask is None else ids[i][mask[i].bool()]
            out.append(str(self.host.tokenizer.decode(row.tolist(), skip_special_tokens=True)))
        return out
