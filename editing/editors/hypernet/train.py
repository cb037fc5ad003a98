"""Meta-training of the hypernetwork (docs/hypernet.md §4), on CPU or CUDA.

rledit: every optimizer step rolls out a fresh trajectory of T turns from W_0 on the evolving
model; turn t is scored on the last J batches at W_t (decay μ, KL against W_{t−1}).
malmen: every turn starts from W_0 and is scored on its own batch (J = 1, KL against W_0).
The LLM backward and the network backward are decoupled: G = ∂L/∂W at W_t, then ∂L/∂D and
∂L/∂λ̃ in dual form, then Σ(∂L/∂D ⊙ D) backpropagated through a re-run of the network.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from contract.errors import InvalidDatasetError
from editing.data import EditCase
from editing.editors.hypernet.anchors import position_mask, subject_positions
from editing.editors.hypernet.capture import Factors, collect
from editing.editors.hypernet.config import TrainConfig
from editing.editors.hypernet.keep_basis import install_keep
from editing.editors.hypernet.meta_loss import Replay, TurnData, locality_logprobs, weight_grads
from editing.editors.hypernet.network import HyperBank
from editing.editors.hypernet.normaliser import NormStats, merged
from editing.editors.hypernet.prefix import PrefixCache
from editing.editors.hypernet.solve import Solution, linear_update, meta_grads, solve
from editing.host import ModelHost, TokenBatch

logger = logging.getLogger(__name__)


def usable(cases: list[EditCase]) -> list[EditCase]:
    """Cases with a rephrase and a locality probe (the meta-loss needs both)."""
    return [c for c in cases if c.rephrases and c.locality]


def turn_data(cases: list[EditCase]) -> TurnData:
    return TurnData(
        edits=[(c.prompt, c.target_new) for c in cases],
        rephrases=[(c.rephrases[0], c.target_new) for c in cases],
        locality=[(c.locality[0].prompt, c.locality[0].answer) for c in cases],
        subjects=[c.subject for c in cases],
    )


def build_optimizer(bank: HyperBank, config: TrainConfig) -> torch.optim.Adam:
    """Adam with three groups: the network, the edit steps α, the log ridge weights λ̃."""
    alphas = [n.alpha for n in bank.networks().values()]
    lambdas = [n.log_lambda for n in bank.networks().values()]
    scalar_ids = {id(p) for p in alphas + lambdas}
    rest = [p for p in bank.parameters() if id(p) not in scalar_ids]
    return torch.optim.Adam([
        {"params": rest, "lr": config.meta_lr},
        {"params": alphas, "lr": config.alpha_lr * config.lr},
        {"params": lambdas, "lr": config.lambda_lr},
    ])


@dataclass
class TurnMetrics:
    edit_nll: float  # mean NLL of the edit targets before the edit
    rephrase_ce: float  # after the edit
    locality_kl: float
    loss: float  # the full (decayed, backtracked) meta-loss


@dataclass
class Trainer:
    """Owns the host's edited weights and the bank during training."""

    host: ModelHost
    config: TrainConfig
    cases: list[EditCase]
    bank: HyperBank
    stats: dict[str, NormStats]
    optimizer: torch.optim.Adam = field(init=False)

    def __post_init__(self) -> None:
        if len(self.cases) < self.config.edits_per_turn:
            raise InvalidDatasetError(f"{len(self.cases)} usable cases; a turn needs {self.config.edits_per_turn}")
        self.modules = self.bank.modules_list
        self.host.track([f"{m}.weight" for m in self.modules])
        self.params = [self.host.parameter(f"{m}.weight") for m in self.modules]
        self.optimizer = build_optimizer(self.bank, self.config)
        self.prefix = PrefixCache(self.host, self.modules)

    @property
    def sequential(self) -> bool:
        return self.config.editor == "rledit"

    def trajectory(self, step: int) -> list[TurnData]:
        """The T turns of optimizer step `step`: a walk through seeded per-epoch permutations."""
        n, size = self.config.edits_per_turn, len(self.cases)
        start = step * self.config.turns * n
        picked = []
        for i in range(start, start + self.config.turns * n):
            epoch = i // size
            perm = torch.randperm(size, generator=torch.Generator().manual_seed(self.config.seed * 7919 + epoch))
            picked.append(self.cases[int(perm[i % size])])
        return [turn_data(picked[t * n : (t + 1) * n]) for t in range(self.config.turns)]

    def run_step(self, step: int, on_turn: object = None) -> list[TurnMetrics]:
        """One trajectory, one optimizer step; the model ends at W_0."""
        self.bank.train()
        self.optimizer.zero_grad(set_to_none=False)
        self.prefix.clear()
        self.host.reset_to_base()
        history: deque[Replay] = deque()
        out = []
        for data in self.trajectory(step):
            if not self.sequential:
                self.host.reset_to_base()
                history.clear()
            out.append(self.turn(data, history))
            if callable(on_turn):
                on_turn(out[-1])
        self.optimizer.step()
        self.host.reset_to_base()
        return out

    def install_keep(self) -> None:
        """Estimate the keep basis of every module on the base model (the train split's tail)."""
        if self.bank.keep_rank and self.config.keep_coef:
            self.host.reset_to_base()
            install_keep(self.host, self.bank, self.cases[-self.config.keep_cases :], coef=self.config.keep_coef,
                         every_token=self.config.key_site == "subject")

    def prime(self, batches: int) -> None:
        """Fill the normaliser from base-model batches (the train split's tail) before any update."""
        n = self.config.edits_per_turn
        self.host.reset_to_base()
        for b in range(batches):
            picked = [self.cases[-1 - (b * n + i) % len(self.cases)] for i in range(n)]
            data = turn_data(picked)
            tokens = self.host.encode_pairs(data.edits)
            factors, _ = collect(self.host.model, self.modules, tokens, self.sites(data, tokens))
            self._update_stats(factors)

    def sites(self, data: TurnData, tokens: TokenBatch) -> Tensor | None:
        """None (answer positions), or each edit's subject's last token for subject-keyed training."""
        if self.config.key_site != "subject":
            return None
        prompts = [p for p, _ in data.edits]
        return position_mask(tokens, subject_positions(self.host, prompts, data.subjects or [None] * len(prompts)))

    @torch.no_grad()
    def evaluate(self, step: int) -> list[TurnMetrics]:
        """The turns of `step`'s trajectory without learning; model and normaliser are left as found."""
        stats = {k: v.clone() for k, v in self.stats.items()}
        self.host.reset_to_base()
        history: deque[Replay] = deque()
        out = []
        try:
            for data in self.trajectory(step):
                if not self.sequential:
                    self.host.reset_to_base()
                    history.clear()
                out.append(self.turn(data, history, learn=False))
        finally:
            self.stats = stats
            self.host.reset_to_base()
        return out

    def turn(self, data: TurnData, history: deque[Replay], learn: bool = True) -> TurnMetrics:
        """State on W_{t−1}, shift, meta-loss on W_t, meta-gradient into the bank (accumulated)."""
        tokens = self.host.encode_pairs(data.edits)
        factors, edit_nll = collect(self.host.model, self.modules, tokens, self.sites(data, tokens))
        self._update_stats(factors)
        solutions = self._solve(factors)
        refs = locality_logprobs(self.host, data.locality, self.prefix.logits)
        history.appendleft(Replay(data=data, refs=refs))
        depth = self.config.back_depth if self.sequential else 1
        while len(history) > depth:
            history.pop()
        self._shift(solutions)
        decay, loc = self.config.decay, self.config.loc_coef
        params = self.params if learn else []
        result, grads = weight_grads(self.host, params, list(history), decay=decay, loc_coef=loc,
                                     logits_fn=self.prefix.logits)
        for replay, posts in zip(history, result.posts, strict=True):
            replay.refs = posts  # W_t is the next turn's W_{t−1}
        if learn:
            self._backprop(factors, solutions, dict(zip(self.modules, grads, strict=True)))
            torch.nn.utils.clip_grad_norm_(list(self.bank.parameters()), self.config.max_grad_norm)
        return TurnMetrics(edit_nll=edit_nll / len(data.edits), rephrase_ce=result.rephrase_ce,
                           locality_kl=result.locality_kl, loss=result.loss)

    def _update_stats(self, factors: dict[str, Factors]) -> None:
        for shape in self.stats:
            rows = [torch.cat([f.keys, f.grads], dim=-1) for m, f in factors.items()
                    if self.bank.module_slots[m].shape == shape]  # each (N, d)
            if rows:
                self.stats[shape] = merged(self.stats[shape], torch.cat(rows))

    def _desired(self, module: str, f: Factors) -> Tensor:
        slot = self.bank.module_slots[module]
        return self.bank.net(module).desired(f.keys, f.grads, slot.index, self.stats[slot.shape],
                                             self.config.chunk_size)  # (N, d_v)

    def _solve(self, factors: dict[str, Factors]) -> dict[str, tuple[Solution, float]]:
        out = {}
        with torch.no_grad():
            for module, f in factors.items():
                slot = self.bank.module_slots[module]
                lam = float(self.bank.net(module).ridge(slot.index))
                keep = self.bank.net(module).keep(self.bank.module_slots[module].index)
                out[module] = (solve(f.keys, self._desired(module, f), lam, keep), lam)
        return out

    def _shift(self, solutions: dict[str, tuple[Solution, float]]) -> None:
        for module, (solution, _) in solutions.items():
            name = f"{module}.weight"
            update = linear_update(solution.left, solution.coeffs)  # (d_v, d_k)
            self.host.set_master(name, self.host.master(name) + update)

    def _backprop(self, factors: dict[str, Factors], solutions: dict[str, tuple[Solution, float]],
                  grads: dict[str, Tensor]) -> None:
        """Accumulate ∂L/∂θ for every module: Σ(∂L/∂D ⊙ D) through the network, ∂L/∂λ̃ directly."""
        for module, f in factors.items():
            solution, lam = solutions[module]
            grad_d, grad_log_lambda = meta_grads(keys=f.keys, solution=solution, weight_grad=grads[module],
                                                 lam=lam, reg_coef=self.config.reg_coef)
            with torch.enable_grad():
                (self._desired(module, f) * grad_d).sum().backward()
            net, index = self.bank.net(module), self.bank.module_slots[module].index
            if net.log_lambda.grad is None:
                net.log_lambda.grad = torch.zeros_like(net.log_lambda)
            net.log_lambda.grad[index] += grad_log_lambda
