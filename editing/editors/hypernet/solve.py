"""The ridge solve that combines every token's desired change (rledit.md §5.3-§5.4, §6).

ΔW = argmin_S ‖K S − D‖² + λ‖S‖² = (KᵀK + λI)⁻¹ KᵀD = Kᵀ C  with  C = (KKᵀ + λI_N)⁻¹ D.
The N × N (dual) system is solved in fp64 by Cholesky when N < d_k, the d_k × d_k (primal)
one otherwise, and the shift is kept as the factor pair (K, C): W_linear += Cᵀ K.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Solution:
    """C (N, d_v) in fp32, plus what the meta-gradient reuses: the factor and the orientation."""

    coeffs: Tensor
    factor: Tensor  # Cholesky factor of (KKᵀ + λI_N) (dual) or (KᵀK + λI_{d_k}) (primal), fp64
    dual: bool


def _gram_factor(keys64: Tensor, lam: float, *, dual: bool) -> Tensor:
    gram = keys64 @ keys64.T if dual else keys64.T @ keys64  # (N, N) or (d_k, d_k)
    gram.diagonal().add_(lam)
    return torch.linalg.cholesky(gram)


def solve(keys: Tensor, desired: Tensor, lam: float) -> Solution:
    """C with (KKᵀ + λI) C = D, for K (N, d_k) and D (N, d_v)."""
    n, d_k = keys.shape
    k64, d64 = keys.to(torch.float64), desired.to(torch.float64)
    dual = n < d_k
    factor = _gram_factor(k64, lam, dual=dual)
    if dual:
        coeffs = torch.cholesky_solve(d64, factor)  # (N, d_v)
    else:
        shift = torch.cholesky_solve(k64.T @ d64, factor)  # (d_k, d_v) = ΔW
        coeffs = (d64 - k64 @ shift) / lam  # (KKᵀ + λI) C = D  <=>  C = (D − K ΔW) / λ
    return Solution(coeffs=coeffs.to(torch.float32), factor=factor, dual=dual)


def dense_shift(keys: Tensor, coeffs: Tensor) -> Tensor:
    """ΔW = Kᵀ C in (d_k, d_v) orientation (tests and the regulariser; edits never store it)."""
    return keys.T @ coeffs


def linear_update(keys: Tensor, coeffs: Tensor) -> Tensor:
    """Cᵀ K: the shift in nn.Linear (d_v, d_k) orientation; one GEMM with inner dimension N."""
    return coeffs.T @ keys


def primal_shift(keys: Tensor, desired: Tensor, lam: float) -> Tensor:
    """(KᵀK + λI)⁻¹ KᵀD in fp64: the reference form, for tests."""
    k64 = keys.to(torch.float64)
    factor = _gram_factor(k64, lam, dual=False)
    return torch.cholesky_solve(k64.T @ desired.to(torch.float64), factor)


def meta_grads(
    *, keys: Tensor, solution: Solution, weight_grad: Tensor, lam: float, reg_coef: float
) -> tuple[Tensor, float]:
    """(∂L/∂D (N, d_v), ∂L/∂λ̃) from G_linear = ∂L/∂W_linear (d_v, d_k) (rledit.md §6).

    G = G_linearᵀ + 2η ΔW; in factor form K G = K G_linearᵀ + 2η (KKᵀ) C.
    """
    k64, c64 = keys.to(torch.float64), solution.coeffs.to(torch.float64)
    kg = k64 @ weight_grad.to(torch.float64).T  # (N, d_v)
    if reg_coef:
        kg = kg + 2.0 * reg_coef * (k64 @ (k64.T @ c64))
    if solution.dual:
        grad_d = torch.cholesky_solve(kg, solution.factor)  # (KKᵀ + λI)⁻¹ K G
    else:
        g = weight_grad.to(torch.float64).T + 2.0 * reg_coef * (k64.T @ c64)  # (d_k, d_v)
        grad_d = k64 @ torch.cholesky_solve(g, solution.factor)  # K A⁻¹ G
    grad_log_lambda = -lam * float((grad_d * c64).sum())
    return grad_d.to(torch.float32), grad_log_lambda
