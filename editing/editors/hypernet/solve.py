"""The ridge solve that combines every token's desired change (docs/hypernet.md §1).

  ΔW = argmin_S ‖K S − D‖² + Sᵀ A₀ S  with  A₀ = λI + P,

where P = U diag(e) Uᵀ is the optional *keep* term: the key second moment of ordinary inputs
(MEMIT's C₀, scaled; rank r, U orthonormal). With P = 0 this is the spec's ridge. With P it
also asks the outputs of ordinary keys to stay put, so a shift uses the directions that are
particular to the edited keys rather than those every prompt shares (docs/hypernet.md §5).

Push-through: ΔW = (KᵀK + A₀)⁻¹KᵀD = Lᵀ C with L = K A₀⁻¹ (N × d_k) and C = M⁻¹ D,
M = K A₀⁻¹ Kᵀ + I_N. A₀⁻¹ has a closed form (Woodbury on the orthonormal basis), so no
d_k × d_k system is formed in the dual case. The N × N system is solved in fp64 by Cholesky
when N < d_k, the d_k × d_k (primal) one otherwise, and the shift is kept as the factor pair
(L, C): W_linear += Cᵀ L. With P = 0, L = K/λ and C = λ(KKᵀ + λI)⁻¹D.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Keep:
    """P = U diag(energy) Uᵀ of one module: basis U (d_k, r) orthonormal, energy (r,) ≥ 0; r may be 0."""

    basis: Tensor
    energy: Tensor


def times_inverse(rows: Tensor, lam: float, keep: Keep | None) -> Tensor:
    """rows A₀⁻¹ for rows (n, d_k) in fp64: (rows − (rows U ⊙ e/(λ+e)) Uᵀ) / λ."""
    if keep is None or keep.basis.shape[-1] == 0:
        return rows / lam
    basis, energy = keep.basis.to(rows), keep.energy.to(rows)
    weight = energy / (lam + energy)  # (r,)
    return (rows - ((rows @ basis) * weight) @ basis.T) / lam


def _dense_a0(lam: float, keep: Keep | None, d_k: int, like: Tensor) -> Tensor:
    a0 = lam * torch.eye(d_k, dtype=like.dtype, device=like.device)
    if keep is not None and keep.basis.shape[-1]:
        basis = keep.basis.to(like)
        a0 = a0 + (basis * keep.energy.to(like)) @ basis.T
    return a0


@dataclass(frozen=True)
class Solution:
    """Factors L (N, d_k) and C (N, d_v) in fp32, plus what the meta-gradient reuses (fp64)."""

    left: Tensor
    coeffs: Tensor
    factor: Tensor  # Cholesky factor of M (dual) or of KᵀK + A₀ (primal)
    dual: bool
    keep: Keep | None = None


def solve(keys: Tensor, desired: Tensor, lam: float, keep: Keep | None = None) -> Solution:
    """The factors of ΔW for K (N, d_k) and D (N, d_v)."""
    n, d_k = keys.shape
    k64, d64 = keys.to(torch.float64), desired.to(torch.float64)
    left = times_inverse(k64, lam, keep)  # (N, d_k)
    dual = n < d_k
    if dual:
        m = k64 @ left.T  # (N, N), symmetric up to rounding
        m = (m + m.T) / 2
        m.diagonal().add_(1.0)
        factor = torch.linalg.cholesky(m)
        coeffs = torch.cholesky_solve(d64, factor)  # (N, d_v)
    else:
        factor = torch.linalg.cholesky(k64.T @ k64 + _dense_a0(lam, keep, d_k, k64))
        shift = torch.cholesky_solve(k64.T @ d64, factor)  # (d_k, d_v) = ΔW
        coeffs = d64 - k64 @ shift  # M C = D  <=>  C = D − K ΔW
    return Solution(left=left.to(torch.float32), coeffs=coeffs.to(torch.float32), factor=factor, dual=dual,
                    keep=keep)


def compact(solution: Solution, keys: Tensor, desired: Tensor, rows: int) -> tuple[Tensor, Tensor]:
    """Factors (L' (rows, d_k), C' (rows, d_v)) fp32 with L'ᵀC' = LᵀC when only the first `rows` rows of D
    can be nonzero (the rest are protected keys, desired change 0): ΔW = (K H⁻¹)ᵀ D with H = KᵀK + A₀,
    and K H⁻¹ = M⁻¹ L in the dual case. The stored artifact then grows with the edits, not with the
    prompts they protect."""
    if solution.dual:
        left = torch.cholesky_solve(solution.left.to(torch.float64), solution.factor)[:rows]  # M⁻¹ L
    else:
        left = torch.cholesky_solve(keys[:rows].to(torch.float64).T, solution.factor).T  # K_e H⁻¹
    return left.to(torch.float32), desired[:rows].to(torch.float32)


def dense_shift(left: Tensor, coeffs: Tensor) -> Tensor:
    """ΔW = Lᵀ C in (d_k, d_v) orientation (tests and the regulariser; edits never store it)."""
    return left.T @ coeffs


def linear_update(left: Tensor, coeffs: Tensor) -> Tensor:
    """Cᵀ L: the shift in nn.Linear (d_v, d_k) orientation; one GEMM with inner dimension N."""
    return coeffs.T @ left


def primal_shift(keys: Tensor, desired: Tensor, lam: float, keep: Keep | None = None) -> Tensor:
    """(KᵀK + A₀)⁻¹ KᵀD in fp64: the reference form, for tests."""
    k64 = keys.to(torch.float64)
    a = k64.T @ k64 + _dense_a0(lam, keep, k64.shape[1], k64)
    return torch.linalg.solve(a, k64.T @ desired.to(torch.float64))


def meta_grads(
    *, keys: Tensor, solution: Solution, weight_grad: Tensor, lam: float, reg_coef: float
) -> tuple[Tensor, float]:
    """(∂L/∂D (N, d_v), ∂L/∂λ̃) from G_linear = ∂L/∂W_linear (d_v, d_k) (docs/hypernet.md §4).

    G = G_linearᵀ + 2η ΔW (the regulariser reaches the network); with H = KᵀK + A₀:
    ∂L/∂D = K H⁻¹ G = M⁻¹ L G and ∂L/∂λ̃ = −λ ⟨H⁻¹G, ΔW⟩, where in the dual case
    ⟨H⁻¹G, LᵀC⟩ = ⟨L A₀⁻¹ G, C⟩ − ⟨M⁻¹ L G, L Lᵀ C⟩ (H⁻¹ = A₀⁻¹ − Lᵀ M⁻¹ L).
    """
    left, c64 = solution.left.to(torch.float64), solution.coeffs.to(torch.float64)
    g = weight_grad.to(torch.float64).T  # (d_k, d_v)
    if reg_coef:
        g = g + 2.0 * reg_coef * (left.T @ c64)
    if solution.dual:
        grad_d = torch.cholesky_solve(left @ g, solution.factor)  # (N, d_v)
        inner = (times_inverse(left, lam, solution.keep) @ g * c64).sum() - (grad_d * (left @ (left.T @ c64))).sum()
    else:
        h_inv_g = torch.cholesky_solve(g, solution.factor)  # (d_k, d_v)
        grad_d = keys.to(torch.float64) @ h_inv_g
        inner = (h_inv_g * (left.T @ c64)).sum()
    return grad_d.to(torch.float32), -lam * float(inner)
