"""Running mean/variance of the rows [k ; δ] that feed one network (docs/hypernet.md §1).

The statistics are plain tensors, never trained. `merged` is pure: the editor computes the
updated statistics in `compute` and commits them in `apply`, so rollback and replay restore
them exactly. The merge is Chan et al.'s parallel update, done in float64 and stored in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-8  # added to the standard deviation; gradients are small but far above this


@dataclass(frozen=True)
class NormStats:
    """count (1,) int64, mean (d,) fp32, var (d,) fp32 (population variance, M2 / count)."""

    count: Tensor
    mean: Tensor
    var: Tensor

    @classmethod
    def empty(cls, size: int, device: torch.device | str = "cpu") -> NormStats:
        return cls(
            count=torch.zeros(1, dtype=torch.int64, device=device),
            mean=torch.zeros(size, dtype=torch.float32, device=device),
            var=torch.zeros(size, dtype=torch.float32, device=device),
        )

    def clone(self) -> NormStats:
        return NormStats(self.count.clone(), self.mean.clone(), self.var.clone())

    def to(self, device: torch.device | str) -> NormStats:
        return NormStats(self.count.to(device), self.mean.to(device), self.var.to(device))

    def tensors(self, prefix: str) -> dict[str, Tensor]:
        return {f"{prefix}/count": self.count, f"{prefix}/mean": self.mean, f"{prefix}/var": self.var}

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], prefix: str) -> NormStats:
        return cls(tensors[f"{prefix}/count"], tensors[f"{prefix}/mean"], tensors[f"{prefix}/var"])

    def equal(self, other: NormStats) -> bool:
        return all(torch.equal(a, b) for a, b in zip(self.astuple(), other.astuple(), strict=True))

    def astuple(self) -> tuple[Tensor, Tensor, Tensor]:
        return self.count, self.mean, self.var


def merged(stats: NormStats, rows: Tensor) -> NormStats:
    """Statistics of everything `stats` has seen plus `rows` (N, d); `stats` is not changed."""
    n_b = rows.shape[0]
    if n_b == 0:
        return stats.clone()
    x = rows.detach().to(torch.float64)  # (N, d)
    mean_b = x.mean(dim=0)  # (d,)
    m2_b = ((x - mean_b) ** 2).sum(dim=0)  # (d,)
    n_a = int(stats.count.item())
    n = n_a + n_b
    mean_a, m2_a = stats.mean.to(torch.float64), stats.var.to(torch.float64) * n_a
    diff = mean_b - mean_a  # (d,)
    mean = mean_a + diff * (n_b / n)
    m2 = m2_a + m2_b + diff**2 * (n_a * n_b / n)
    count = torch.full_like(stats.count, n)
    return NormStats(count=count, mean=mean.to(torch.float32), var=(m2 / n).to(torch.float32))


def standardise(stats: NormStats, rows: Tensor) -> Tensor:
    """(rows - mean) / (std + EPS), row-wise; (N, d) -> (N, d)."""
    std = stats.var.clamp_min(0).sqrt()  # (d,)
    return (rows - stats.mean) / (std + EPS)
