"""The keep basis: what ordinary inputs look like at the edited modules (docs/hypernet.md §5).

Before training, the base model reads ordinary (prompt, answer) pairs from the training split
(locality prompts with their answers, edit prompts with their true answers). At every edited
module the keys at the answer-predicting positions give the second moment C₀ = E[k kᵀ]
(MEMIT's statistic); its top-r eigenvectors and eigenvalues are stored with the network, and
the ridge solve adds μ·C₀ (rank r) to its regulariser so shifts leave these keys' outputs alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from editing.data import EditCase
from editing.editors.hypernet.network import HyperBank
from editing.host import ModelHost, TokenBatch

logger = logging.getLogger(__name__)
Pair = tuple[str, str]


def keep_pairs(cases: list[EditCase]) -> list[Pair]:
    """Ordinary inputs of the cases: locality prompts with their answers, prompts with their true answers."""
    pairs = [(loc.prompt, loc.answer) for c in cases for loc in c.locality[:1]]
    pairs += [(c.prompt, c.target_true) for c in cases if c.target_true]
    return pairs


@contextmanager
def _inputs(model: nn.Module, modules: list[str], select: Tensor) -> Iterator[dict[str, Tensor]]:
    """Forward pre-hooks that keep each module's input rows where `select` (B, L) is true, fp64."""
    seen: dict[str, Tensor] = {}
    handles = []

    def hook(name: str) -> Callable[[nn.Module, tuple[Tensor, ...]], None]:
        def record(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            seen[name] = args[0][select].double()  # (N, d_k)

        return record

    try:
        for name in modules:
            handles.append(model.get_submodule(name).register_forward_pre_hook(hook(name)))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def key_moments(host: ModelHost, modules: list[str], pairs: list[Pair], *, every_token: bool = False,
                batch: int = 16) -> dict[str, Tensor]:
    """C₀ = mean k kᵀ (d_k, d_k) in fp64 per module over the answer-predicting positions of `pairs`,
    or over every token of them (`every_token`: what keys read at the subject must be kept from)."""
    sums: dict[str, Tensor] = {}
    rows = 0
    for start in range(0, len(pairs), batch):
        tokens: TokenBatch = host.encode_pairs(pairs[start : start + batch])
        if every_token:
            select = tokens.attention_mask.bool()  # (B, L)
        else:
            select = torch.nn.functional.pad(tokens.target_mask, (0, 1))  # (B, L): answer-predicting positions
        with _inputs(host.model, modules, select) as seen:
            host.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
        for name, keys in seen.items():
            sums[name] = sums.get(name, 0) + keys.T @ keys
        rows += int(select.sum())
    return {name: total / max(rows, 1) for name, total in sums.items()}


@torch.no_grad()
def prompt_keys(host: ModelHost, modules: list[str], prompts: list[str], *, every_token: bool = False
                ) -> dict[str, Tensor]:
    """Each module's input at the last token of every prompt (the position that predicts the answer),
    or at every token of them, (n, d_k) fp32 per module, on the current model."""
    ids = [host.encode_prompt(p) for p in prompts]
    width = max(len(i) for i in ids)
    input_ids = torch.full((len(ids), width), int(host.tokenizer.pad_token_id), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    select = torch.zeros((len(ids), width), dtype=torch.bool)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        select[row, : len(tokens)] = every_token
        select[row, len(tokens) - 1] = True
    device = host.device
    with _inputs(host.model, modules, select.to(device)) as seen:
        host.model(input_ids=input_ids.to(device), attention_mask=mask.to(device))
    return {name: rows.to(torch.float32) for name, rows in seen.items()}


def top_basis(moment: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """(U (d_k, r), s (r,)): the top-`rank` eigenvectors and eigenvalues of a symmetric matrix, fp32."""
    values, vectors = torch.linalg.eigh(moment)  # ascending
    keep = min(rank, values.shape[0])
    top = torch.arange(values.shape[0] - 1, values.shape[0] - 1 - keep, -1)
    return vectors[:, top].to(torch.float32).contiguous(), values[top].clamp_min(0).to(torch.float32)


def install_keep(host: ModelHost, bank: HyperBank, cases: list[EditCase], *, coef: float,
                 every_token: bool = False) -> int:
    """Estimate every module's basis from `cases` on the current (base) model; returns the rows' pair count."""
    pairs = keep_pairs(cases)
    moments = key_moments(host, bank.modules_list, pairs, every_token=every_token)
    for module, moment in moments.items():
        slot, net = bank.module_slots[module], bank.net(module)
        basis, energy = top_basis(moment, net.keep_basis.shape[-1])
        net.set_keep(slot.index, basis, energy, coef)
        logger.info("keep basis of %s: rank %d, top eigenvalue %.3g, trace share %.3f", module, basis.shape[1],
                    float(energy[0]), float(energy.sum() / moment.trace().clamp_min(1e-12)))
    return len(pairs)
