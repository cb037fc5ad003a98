"""The rledit / malmen editors: one code path at edit time (docs/hypernet.md §1).

compute: (K, Δ) on the current model → updated copy of the normaliser → network (no grad) →
ridge solve (with the checkpoint's keep term) → artifact with the factors (L_m, C_m) per module,
never a dense ΔW.
apply: W_linear += Cᵀ L on the fp32 masters, and the normaliser state from the artifact.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from contract.errors import CheckpointMismatchError, InvalidEditError
from contract.subjects import edit_subject
from editing.artifacts import EditArtifact
from editing.editors.base import EditBatch, Editor, RestoreParams, Undo
from editing.editors.hypernet.anchors import position_mask, subject_positions
from editing.editors.hypernet.capture import Factors, collect
from editing.editors.hypernet.checkpoint import (
    Checkpoint,
    config_sha256,
    find_checkpoint,
    load_checkpoint,
    train_command,
)
from editing.editors.hypernet.config import HypernetConfig
from editing.editors.hypernet.keep_basis import prompt_keys
from editing.editors.hypernet.modules import resolve_modules, slots
from editing.editors.hypernet.network import HyperBank
from editing.editors.hypernet.normaliser import NormStats, merged
from editing.editors.hypernet.prefix import PrefixCache
from editing.editors.hypernet.refine import contexts, refine
from editing.editors.hypernet.solve import compact, linear_update, solve
from editing.host import TokenBatch
from editing.probes import about_any, derived_neighbours, load_standing, shipped_standing_path

logger = logging.getLogger(__name__)

PROTECT_SCALE = 10.0
"""Protected keys enter the least squares scaled by this (weight 100), so their zero change is
met far more tightly than the ridge term would allow a plain row."""


class HypernetEditor(Editor):
    """Shared implementation; subclasses only fix the name (and so the default checkpoint)."""

    version = "1"
    config_cls = HypernetConfig
    config: HypernetConfig

    def attach(self) -> None:
        loaded = self._untrained() if self.config.untrained else self._load()
        self.bank = loaded.bank.eval().requires_grad_(False)
        self.checkpoint_sha256 = loaded.sha256
        self.key_site = loaded.card.key_site
        self._base_stats = {k: v.clone() for k, v in loaded.stats.items()}
        self._stats = {k: v.clone() for k, v in loaded.stats.items()}
        super().attach()

    def _load(self) -> Checkpoint:
        host = self.host
        path = self.config.checkpoint or find_checkpoint(
            editor=self.name, model_id=host.model_id, config_hash=config_sha256(host.model))
        if path is None:
            cmd = train_command(editor=self.name, model_id=host.model_id)
            raise CheckpointMismatchError(
                f"no {self.name} checkpoint matches model {host.model_id!r}; train one with: {cmd}", command=cmd)
        checkpoint = load_checkpoint(Path(path), model=host.model, model_id=host.model_id,
                                     modules=self.config.modules, device=host.device)
        logger.info("%s: checkpoint %s (sha256 %s, %d modules)", self.name, path, checkpoint.sha256[:12],
                    len(checkpoint.card.modules))
        return checkpoint

    def _untrained(self) -> Checkpoint:
        from editing.editors.hypernet.checkpoint import CheckpointCard, model_ref

        spec = self.config.modules or "A"
        module_slots = slots(self.host.model, resolve_modules(self.host.model, spec))
        bank = HyperBank(module_slots=module_slots, rank=1, blocks=1, lr=self.config.lr).to(self.host.device)
        logger.warning("%s runs an UNTRAINED hypernetwork (config untrained=true): for tests only", self.name)
        card = CheckpointCard(editor=self.name, model=model_ref(self.host.model, self.host.model_id),
                              modules=list(module_slots), shapes={}, rank=1, blocks=1, matrix_dtype="float32",
                              weights_sha256="untrained", key_site=self.config.key_site or "answer")
        return Checkpoint(bank=bank, stats=bank.empty_stats(self.host.device), card=card, sha256="untrained")

    @property
    def modules(self) -> list[str]:
        return self.bank.modules_list

    def tracked_parameters(self) -> list[str]:
        return [f"{m}.weight" for m in self.modules]

    # ---- compute ---------------------------------------------------------------------------------
    def compute(self, batch: EditBatch) -> EditArtifact:
        tokens = self.host.encode_pairs(batch.pairs)
        n = int(tokens.target_mask.sum())
        if n > self.config.max_answer_tokens:
            raise InvalidEditError(
                f"the batch has {n} answer tokens; {self.name} takes at most {self.config.max_answer_tokens} "
                "(max_answer_tokens) per revision", field="target")
        sites = self.sites(batch, tokens)
        factors, _ = collect(self.host.model, self.modules, tokens, sites)
        stats = self.updated_stats(factors)
        with torch.no_grad():
            desired = {m: self.desired(m, f, stats) for m, f in factors.items()}
        steps = 0
        if sites is not None and self.config.refine_steps:
            desired, steps = self.refined(batch, desired)
        protected, n_protected = self.protected_keys(batch)
        tensors: dict[str, Tensor] = {}
        lambdas = {}
        with torch.no_grad():
            for module, f in factors.items():
                pair, lambdas[module] = self.solved(module, f.keys, desired[module], protected.get(module))
                tensors[f"left/{module}"], tensors[f"coeffs/{module}"] = pair
        for shape, s in stats.items():
            tensors.update(s.tensors(f"norm/{shape}"))
        alphas = {m: float(self.bank.net(m).alpha[self.bank.module_slots[m].index]) for m in self.modules}
        return self._artifact(tensors, alpha=alphas, ridge=lambdas, answer_tokens=n, edits=len(batch.edits),
                              checkpoint_sha256=self.checkpoint_sha256, model=self.host.model_id,
                              serving_dtype=str(self.host.dtype).removeprefix("torch."), keep_rank=self.bank.keep_rank,
                              key_site=self.key_site, refine_steps=steps,
                              protected_prompts=n_protected, protected_rows=len(next(iter(protected.values()), ())),
                              keep_coef=self.config.keep_coef)

    def sites(self, batch: EditBatch, tokens: TokenBatch) -> Tensor | None:
        """Where keys are read: None for the answer positions, else each edit's subject's last token."""
        if self.key_site != "subject":
            return None
        subjects = [edit_subject(e.prompt, e.subject) for e in batch.edits]
        return position_mask(tokens, subject_positions(self.host, [e.prompt for e in batch.edits], subjects))

    def updated_stats(self, factors: dict[str, Factors]) -> dict[str, NormStats]:
        """A copy of the normaliser statistics updated with this batch's rows [k ; δ] (per shape)."""
        out = {}
        for shape, stats in self._stats.items():
            rows = [torch.cat([f.keys, f.grads], dim=-1) for m, f in factors.items()
                    if self.bank.module_slots[m].shape == shape]  # each (N, d)
            out[shape] = merged(stats, torch.cat(rows)) if rows else stats.clone()
        return out

    def protected_keys(self, batch: EditBatch) -> tuple[dict[str, Tensor], int]:
        """(per module the keys (n, d_k) whose outputs the shift must leave alone, how many prompts gave
        them): the batch's locality prompts, at their last token, or at every token when keys are read
        at the subject."""
        prompts = [p for e in batch.edits for p in e.locality] if self.config.protect_locality else []
        if self.key_site == "subject":
            prompts += self.unnamed_neighbours(batch)
        prompts = list(dict.fromkeys(prompts))
        if not prompts:
            return {}, 0
        return prompt_keys(self.host, self.modules, prompts, every_token=self.key_site == "subject"), len(prompts)

    def unnamed_neighbours(self, batch: EditBatch) -> list[str]:
        """Prompts the client did not name but the shift must spare: derived neighbours of each edit and
        the standing set, minus any about a subject this batch edits."""
        found = [edit_subject(e.prompt, e.subject) for e in batch.edits]
        subjects = [s for s in found if s]
        out = [n for e, s in zip(batch.edits, found, strict=True)
               for n in derived_neighbours(e.prompt, s, self.config.protect_neighbours, exclude=subjects)]
        if self.config.protect_standing:
            out += [f.prompt for f in load_standing(shipped_standing_path())]
        return [p for p in out if not about_any(p, subjects)]

    def desired(self, module: str, f: Factors, stats: dict[str, NormStats]) -> Tensor:
        """The network's desired change D (N, d_v) of one module's output at its key rows."""
        slot = self.bank.module_slots[module]
        return self.bank.net(module).desired(f.keys, f.grads, slot.index, stats[slot.shape], self.config.chunk_size)

    def refined(self, batch: EditBatch, desired: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
        """The desired changes after refine.py's steps (the network's are the start), each edit fitted in
        its contexts (refine.contexts)."""
        rows: list[tuple[str, str, str | None, int]] = []
        for index, edit in enumerate(batch.edits):
            subject = edit_subject(edit.prompt, edit.subject)
            rows += [(p, edit.target, subject, index) for p in contexts(
                self.host, edit.prompt, prefixes=self.config.refine_prefixes, chat=self.config.refine_chat)]
        pairs = [(p, t) for p, t, _, _ in rows]
        tokens = self.host.encode_pairs(pairs)
        sites = position_mask(tokens, subject_positions(self.host, [r[0] for r in rows], [r[2] for r in rows]))
        owner = torch.tensor([r[3] for r in rows], device=tokens.input_ids.device)
        prefix = PrefixCache(self.host, self.modules)

        def logits() -> Tensor:
            return prefix.logits(pairs)[0]

        return refine(self.host.model, tokens, sites, desired, logits_fn=logits, steps=self.config.refine_steps,
                      lr=self.config.refine_lr, stop_nll=self.config.refine_stop_nll, owner=owner)

    def solved(self, module: str, keys: Tensor, desired: Tensor, protected: Tensor | None = None
               ) -> tuple[tuple[Tensor, Tensor], float]:
        """((L (N, d_k), C (N, d_v)), λ) of one module: its shift is Cᵀ L. Protected keys join the
        solve with a desired change of 0."""
        slot = self.bank.module_slots[module]
        net = self.bank.net(module)
        rows = keys.shape[0]
        if protected is not None and protected.shape[0]:
            keys = torch.cat([keys, PROTECT_SCALE * protected])  # (N + n, d_k)
            desired = torch.cat([desired, desired.new_zeros(protected.shape[0], desired.shape[1])])
        lam = self.config.ridge or float(net.ridge(slot.index))
        solution = solve(keys, desired, lam, net.keep(slot.index, self.config.keep_coef, self.config.keep_rank))
        if keys.shape[0] == rows:
            return (solution.left, solution.coeffs), lam
        return compact(solution, keys, desired, rows), lam

    # ---- apply / state -------------------------------------------------------------------------
    def apply(self, artifact: EditArtifact) -> Undo:
        self._check_artifact(artifact)
        modules = [k.removeprefix("left/") for k in artifact.tensors if k.startswith("left/")]
        unknown = sorted(set(modules) - set(self.modules))
        if unknown:
            raise InvalidEditError(f"the artifact edits modules this {self.name} editor does not track: {unknown}")
        stats = {s: NormStats.from_tensors(artifact.tensors, f"norm/{s}").to(self.host.device) for s in self._stats}
        undo = RestoreParams(params={f"{m}.weight": self.host.master(f"{m}.weight").clone() for m in modules},
                             editor_state={k: v.clone() for k, v in self.state_tensors().items()})
        device = self.host.device
        for module in modules:
            left = artifact.tensors[f"left/{module}"].to(device)  # (N, d_k)
            coeffs = artifact.tensors[f"coeffs/{module}"].to(device)  # (N, d_v)
            name = f"{module}.weight"
            self.host.set_master(name, self.host.master(name) + linear_update(left, coeffs))
        self._stats = {s: v.clone() for s, v in stats.items()}
        return undo

    def state_tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for shape, stats in self._stats.items():
            out.update(stats.tensors(f"norm/{shape}"))
        return out

    def load_state_tensors(self, state: dict[str, Tensor]) -> None:
        expected = set(self.state_tensors())
        if set(state) != expected:
            raise ValueError(f"{self.name} state needs {sorted(expected)}, got {sorted(state)}")
        device = self.host.device
        self._stats = {s: NormStats.from_tensors(state, f"norm/{s}").clone().to(device) for s in self._stats}

    def reset(self) -> None:
        self.host.reset_to_base()
        self._stats = {k: v.clone() for k, v in self._base_stats.items()}

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "checkpoint_sha256": self.checkpoint_sha256, "modules": self.modules}


class RLEditEditor(HypernetEditor):
    """RLEdit: the network trained on trajectories of the evolving model."""

    name = "rledit"


class MalmenEditor(HypernetEditor):
    """MALMEN: the same network trained on single turns from the base model."""

    name = "malmen"
