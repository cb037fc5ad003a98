"""MALMEN's hypernetwork (docs/hypernet.md §1): normalised [k ; δ] through residual low-rank blocks.

One `HyperNet` per distinct (d_k, d_v); modules of that shape are told apart by an index that
selects per-module scale/shift embeddings, the edit step α and the log ridge weight λ̃. Every
block starts as the identity (B = 0), so an untrained network passes the standardised rows on.
Each module may also carry a *keep* basis (buffers, not trained): the top-r eigenvectors and
eigenvalues of the base model's key second moment and a coefficient μ, which the ridge solve
turns into the preservation term P = μ U diag(s) Uᵀ (solve.py).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from editing.editors.hypernet.modules import Slot
from editing.editors.hypernet.normaliser import NormStats, standardise
from editing.editors.hypernet.solve import Keep


class HyperBlock(nn.Module):
    """h + scale[m] ⊙ relu(h A B + bias) + shift[m]."""

    def __init__(self, *, size: int, rank: int, n_modules: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.randn(size, rank, generator=generator))  # (d, r)
        self.B = nn.Parameter(torch.zeros(rank, size))  # (r, d)
        self.bias = nn.Parameter(torch.zeros(size))  # (d,)
        self.scale = nn.Parameter(torch.ones(n_modules, size))  # (M, d)
        self.shift = nn.Parameter(torch.zeros(n_modules, size))  # (M, d)

    def forward(self, h: Tensor, index: int) -> Tensor:
        z = torch.relu(h @ self.A @ self.B + self.bias)  # (N, d)
        return h + self.scale[index] * z + self.shift[index]


class HyperNet(nn.Module):
    """H_θ for one weight shape, with the per-module scalars α (edit step) and λ̃ (log ridge)."""

    keep_basis: Tensor  # buffers, see __init__
    keep_energy: Tensor
    keep_coef: Tensor

    def __init__(
        self, *, d_k: int, d_v: int, rank: int, blocks: int, n_modules: int, lr: float, keep_rank: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.d_k, self.d_v = d_k, d_v
        size = d_k + d_v
        self.blocks = nn.ModuleList(
            HyperBlock(size=size, rank=rank, n_modules=n_modules, generator=generator) for _ in range(blocks)
        )
        self.alpha = nn.Parameter(torch.full((n_modules,), float(lr)))  # (M,)
        self.log_lambda = nn.Parameter(torch.zeros(n_modules))  # (M,)
        keep_rank = min(keep_rank, d_k)
        self.register_buffer("keep_basis", torch.zeros(n_modules, d_k, keep_rank))  # (M, d_k, r)
        self.register_buffer("keep_energy", torch.zeros(n_modules, keep_rank))  # (M, r)
        self.register_buffer("keep_coef", torch.zeros(n_modules))  # (M,)

    def transform(self, keys: Tensor, grads: Tensor, index: int, stats: NormStats) -> tuple[Tensor, Tensor]:
        """(k̃, δ̃) from (K (N, d_k), Δ (N, d_v)), row by row."""
        h = standardise(stats, torch.cat([keys, grads], dim=-1))  # (N, d)
        for block in self.blocks:
            h = block(h, index)
        k_t, d_t = h.split([self.d_k, self.d_v], dim=-1)  # (N, d_k), (N, d_v)
        return k_t, d_t

    def desired(self, keys: Tensor, grads: Tensor, index: int, stats: NormStats, chunk: int) -> Tensor:
        """D = −α (k·k̃) δ̃ (N, d_v), computed in row chunks of `chunk`."""
        parts = []
        for start in range(0, keys.shape[0], chunk):
            k, g = keys[start : start + chunk], grads[start : start + chunk]
            k_t, d_t = self.transform(k, g, index, stats)
            parts.append(-self.alpha[index] * (k * k_t).sum(dim=-1, keepdim=True) * d_t)  # (n, d_v)
        return torch.cat(parts) if parts else grads.new_zeros(0, self.d_v)

    def ridge(self, index: int) -> Tensor:
        """λ = exp(λ̃) of one module (a 0-dim tensor)."""
        return self.log_lambda[index].exp()

    def keep(self, index: int, coef: float | None = None, rank: int | None = None) -> Keep | None:
        """The preservation term of one module (None when it has none); `coef` overrides μ, `rank`
        keeps only the top eigenpairs."""
        mu = float(self.keep_coef[index]) if coef is None else coef
        if self.keep_basis.shape[-1] == 0 or mu == 0:
            return None
        top = slice(0, rank)
        return Keep(basis=self.keep_basis[index][:, top], energy=mu * self.keep_energy[index][top])

    def set_keep(self, index: int, basis: Tensor, energy: Tensor, coef: float) -> None:
        """Install one module's basis (d_k, r) and eigenvalues (r,) with μ = `coef`."""
        with torch.no_grad():
            self.keep_basis[index].copy_(basis)
            self.keep_energy[index].copy_(energy)
            self.keep_coef[index] = coef


class HyperBank(nn.Module):
    """All networks of one editor, keyed by shape, and the slot of every edited module."""

    def __init__(
        self, *, module_slots: dict[str, Slot], rank: int, blocks: int, lr: float, seed: int = 0, keep_rank: int = 0
    ) -> None:
        super().__init__()
        self.module_slots = dict(module_slots)
        self.rank, self.n_blocks, self.keep_rank = rank, blocks, keep_rank
        generator = torch.Generator().manual_seed(seed)
        nets: dict[str, HyperNet] = {}
        for slot in module_slots.values():
            if slot.shape not in nets:
                count = sum(1 for s in module_slots.values() if s.shape == slot.shape)
                nets[slot.shape] = HyperNet(d_k=slot.d_k, d_v=slot.d_v, rank=rank, blocks=blocks,
                                            n_modules=count, lr=lr, keep_rank=keep_rank, generator=generator)
        self.nets = nn.ModuleDict(nets)

    def networks(self) -> dict[str, HyperNet]:
        """The networks by shape key (typed view of `nets`)."""
        return {key: net for key, net in self.nets.items() if isinstance(net, HyperNet)}

    @property
    def modules_list(self) -> list[str]:
        return list(self.module_slots)

    def net(self, module: str) -> HyperNet:
        return self.networks()[self.module_slots[module].shape]

    def empty_stats(self, device: torch.device | str = "cpu") -> dict[str, NormStats]:
        return {key: NormStats.empty(net.d_k + net.d_v, device) for key, net in self.networks().items()}
