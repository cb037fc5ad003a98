"""Hypernetwork maths: normaliser, ridge solve (dual = primal), meta-gradient formulas, network init."""

from __future__ import annotations

import pytest
import torch

from editing.editors.hypernet.modules import Slot
from editing.editors.hypernet.network import HyperBank
from editing.editors.hypernet.normaliser import NormStats, merged, standardise
from editing.editors.hypernet.solve import (
    Keep,
    compact,
    dense_shift,
    linear_update,
    meta_grads,
    primal_shift,
    solve,
    times_inverse,
)


@pytest.fixture()
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def random_keep(d_k: int, rank: int, seed: int = 3) -> Keep:
    """An orthonormal basis (d_k, rank) with energies of the size of ‖k‖² for unit-variance keys."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d_k, rank, generator=g, dtype=torch.float64))
    return Keep(basis=basis.float(), energy=torch.rand(rank, generator=g) * 20 + 1)


def test_normaliser_update_matches_direct_mean_and_var(gen: torch.Generator) -> None:
    chunks = [torch.randn(n, 6, generator=gen) * 3 + 1 for n in (1, 7, 30, 2)]
    stats = NormStats.empty(6)
    for chunk in chunks:
        before = stats.clone()
        stats = merged(stats, chunk)
        assert before.equal(merged(before, chunk[:0]))  # pure: the input is not changed
    rows = torch.cat(chunks).double()
    assert int(stats.count) == rows.shape[0]
    torch.testing.assert_close(stats.mean.double(), rows.mean(0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(stats.var.double(), rows.var(0, unbiased=False), rtol=1e-5, atol=1e-6)


def test_standardise_gives_zero_mean_unit_std(gen: torch.Generator) -> None:
    rows = torch.randn(500, 4, generator=gen) * torch.tensor([1e-3, 1.0, 10.0, 0.1]) + 5
    z = standardise(merged(NormStats.empty(4), rows), rows)
    torch.testing.assert_close(z.mean(0), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(4), atol=1e-4, rtol=0)


@pytest.mark.parametrize("keep", [None, 0, 3])
@pytest.mark.parametrize("n", [3, 12])  # dual (N < d_k) and primal (N >= d_k)
def test_push_through_solve_equals_primal(gen: torch.Generator, n: int, keep: int | None) -> None:
    keys, desired, lam = torch.randn(n, 8, generator=gen), torch.randn(n, 5, generator=gen), 0.7
    term = None if keep is None else random_keep(8, keep)
    solution = solve(keys, desired, lam, term)
    assert solution.dual == (n < 8)
    assert solution.left.shape == (n, 8) and solution.coeffs.shape == (n, 5)
    shift = dense_shift(solution.left.double(), solution.coeffs.double())  # (d_k, d_v)
    torch.testing.assert_close(shift, primal_shift(keys, desired, lam, term), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(linear_update(solution.left, solution.coeffs).T.double(), shift, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("keep", [None, 3])
@pytest.mark.parametrize("protected", [2, 9])  # dual (N < d_k) and primal (N >= d_k)
def test_compact_factors_drop_protected_rows_and_keep_the_shift(gen: torch.Generator, protected: int,
                                                               keep: int | None) -> None:
    """Protected keys (desired change 0) shape the solve but need not be stored: 2 rows give the same ΔW."""
    keys = torch.randn(2 + protected, 8, generator=gen)
    desired = torch.cat([torch.randn(2, 5, generator=gen), torch.zeros(protected, 5)])
    term = None if keep is None else random_keep(8, keep)
    solution = solve(keys, desired, 0.7, term)
    left, coeffs = compact(solution, keys, desired, 2)
    assert left.shape == (2, 8) and coeffs.shape == (2, 5)
    torch.testing.assert_close(linear_update(left, coeffs), linear_update(solution.left, solution.coeffs),
                               rtol=1e-4, atol=1e-5)
    assert linear_update(left, coeffs).T.double().sub(primal_shift(keys, desired, 0.7, term)).abs().max() < 1e-4


def test_without_keep_the_factors_are_the_spec_ridge() -> None:
    gen = torch.Generator().manual_seed(1)
    keys, desired = torch.randn(4, 30, generator=gen, dtype=torch.float64), torch.randn(4, 6, generator=gen,
                                                                                         dtype=torch.float64)
    lam = 1e-3
    solution = solve(keys, desired, lam)
    torch.testing.assert_close(solution.left.double(), keys / lam, rtol=1e-6, atol=0)
    c = (keys @ keys.T + lam * torch.eye(4, dtype=torch.float64)) @ solution.coeffs.double()  # = λ D
    torch.testing.assert_close(c, lam * desired, rtol=1e-5, atol=1e-8)


def test_times_inverse_is_the_inverse_of_lambda_plus_keep() -> None:
    keep, lam = random_keep(8, 3), 0.4
    rows = torch.randn(5, 8, dtype=torch.float64)
    a0 = lam * torch.eye(8, dtype=torch.float64) + (keep.basis.double() * keep.energy.double()) @ keep.basis.double().T
    torch.testing.assert_close(times_inverse(rows, lam, keep) @ a0, rows, rtol=1e-6, atol=1e-6)


def test_the_keep_term_spares_ordinary_keys_and_still_fits_the_edit(gen: torch.Generator) -> None:
    """Keys = a shared component (what every prompt has) + a particular one. Keeping the shared
    direction moves a probe that shares only it far less, while the edit keys still get about D."""
    common = torch.zeros(16)
    common[0] = 6.0
    keys = common + torch.randn(3, 16, generator=gen)  # edit keys
    probe = common + torch.randn(16, generator=gen)  # an unrelated prompt's key
    desired = torch.randn(3, 4, generator=gen)
    basis = torch.zeros(16, 1)
    basis[0, 0] = 1.0
    changes = {}
    for name, keep in {"plain": None, "keep": Keep(basis=basis, energy=torch.tensor([1e4]))}.items():
        solution = solve(keys, desired, 0.1, keep)
        shift = dense_shift(solution.left.double(), solution.coeffs.double())  # (d_k, d_v)
        changes[name] = float((probe.double() @ shift).norm())
        torch.testing.assert_close(keys.double() @ shift, desired.double(), rtol=0.2, atol=0.2)
    assert changes["keep"] < 0.5 * changes["plain"], changes


def _autograd_reference(keys: torch.Tensor, desired: torch.Tensor, lam: float, grad_w: torch.Tensor,
                        eta: float, keep: Keep | None) -> tuple[torch.Tensor, float]:
    """∂/∂D and ∂/∂λ̃ of ⟨G, ΔW(D, λ)⟩ + η‖ΔW‖² by autograd through a differentiable primal solve."""
    k = keys.double()
    d = desired.double().requires_grad_(True)
    log_lam = torch.tensor(float(torch.log(torch.tensor(lam))), dtype=torch.float64, requires_grad=True)
    a = k.T @ k + log_lam.exp() * torch.eye(k.shape[1], dtype=torch.float64)
    if keep is not None:
        a = a + (keep.basis.double() * keep.energy.double()) @ keep.basis.double().T
    shift = torch.linalg.solve(a, k.T @ d)  # (d_k, d_v)
    loss = (grad_w.double().T * shift).sum() + eta * (shift**2).sum()
    grad_d, grad_lam = torch.autograd.grad(loss, [d, log_lam])
    return grad_d, float(grad_lam)


@pytest.mark.parametrize("with_keep", [False, True])
@pytest.mark.parametrize(("n", "eta"), [(3, 0.0), (3, 0.3), (12, 0.0), (12, 0.3)])
def test_meta_grads_match_autograd(gen: torch.Generator, n: int, eta: float, with_keep: bool) -> None:
    keys, desired, lam = torch.randn(n, 8, generator=gen), torch.randn(n, 5, generator=gen), 0.5
    grad_w = torch.randn(5, 8, generator=gen)  # ∂L/∂W_linear (d_v, d_k)
    keep = random_keep(8, 3) if with_keep else None
    solution = solve(keys, desired, lam, keep)
    grad_d, grad_lam = meta_grads(keys=keys, solution=solution, weight_grad=grad_w, lam=lam, reg_coef=eta)
    ref_d, ref_lam = _autograd_reference(keys, desired, lam, grad_w, eta, keep)
    torch.testing.assert_close(grad_d.double(), ref_d, rtol=1e-4, atol=1e-5)
    assert grad_lam == pytest.approx(ref_lam, rel=1e-4, abs=1e-6)


def test_regulariser_changes_the_meta_gradient_and_zero_is_unregularised(gen: torch.Generator) -> None:
    keys, desired, lam = torch.randn(3, 8, generator=gen), torch.randn(3, 5, generator=gen), 0.5
    grad_w = torch.randn(5, 8, generator=gen)
    solution = solve(keys, desired, lam)
    plain = meta_grads(keys=keys, solution=solution, weight_grad=grad_w, lam=lam, reg_coef=0.0)
    regularised = meta_grads(keys=keys, solution=solution, weight_grad=grad_w, lam=lam, reg_coef=0.1)
    assert not torch.allclose(plain[0], regularised[0])
    assert plain[1] != regularised[1]
    # η = 0 is exactly the formula without the regulariser: (KKᵀ + λI)⁻¹ K G
    k = keys.double()
    direct = torch.linalg.solve(k @ k.T + lam * torch.eye(3, dtype=torch.float64), k @ grad_w.double().T)
    torch.testing.assert_close(plain[0].double(), direct, rtol=1e-5, atol=1e-6)


def test_untrained_network_is_the_identity_on_standardised_rows(gen: torch.Generator) -> None:
    slots = {"m0": Slot(shape="4x3", index=0, d_k=4, d_v=3), "m1": Slot(shape="4x3", index=1, d_k=4, d_v=3),
             "m2": Slot(shape="3x4", index=0, d_k=3, d_v=4)}
    bank = HyperBank(module_slots=slots, rank=5, blocks=2, lr=0.1)
    assert sorted(bank.nets) == ["3x4", "4x3"]
    keys, grads = torch.randn(6, 4, generator=gen), torch.randn(6, 3, generator=gen)
    stats = merged(NormStats.empty(7), torch.cat([keys, grads], -1))
    k_t, d_t = bank.net("m1").transform(keys, grads, 1, stats)
    torch.testing.assert_close(torch.cat([k_t, d_t], -1), standardise(stats, torch.cat([keys, grads], -1)))
    desired = bank.net("m1").desired(keys, grads, 1, stats, chunk=4)  # chunking does not matter
    torch.testing.assert_close(desired, -0.1 * (keys * k_t).sum(-1, keepdim=True) * d_t)
