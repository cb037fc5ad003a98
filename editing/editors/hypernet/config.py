"""Configs of the hypernetwork editors (edit time) and of their training (`factpatch train`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from editing.editors.base import EditorConfig

KeySite = Literal["answer", "subject"]


class HypernetConfig(EditorConfig):
    """rledit / malmen at edit time: a trained hypernetwork turns (K, Δ) into low-rank shifts."""

    checkpoint: Path | None = Field(
        None,
        description="Hypernetwork checkpoint (.safetensors next to its .json card). Unset = the shipped "
        "checkpoint in editing/checkpoints/ whose card matches the loaded model (model id + config hash).",
    )
    modules: str | None = Field(
        None,
        description="Edited modules: a preset name (A, B, C, D for 30-layer Llamas), groups like "
        "'gate_proj:10-14,up_proj:17-23', or dotted nn.Linear names, comma separated. Unset = the "
        "checkpoint's list; when set it must equal the checkpoint's list.",
    )
    max_answer_tokens: int = Field(
        384,
        ge=1,
        description="Most answer tokens N in one batch (N* guard: factors (K, C) are smaller than a dense "
        "shift only while N < d_k*d_v/(d_k+d_v), about 419 for SmolLM2). Larger batches are refused.",
    )
    chunk_size: int = Field(
        4096, ge=1, description="Rows of (K, Δ) the network processes at once (bounds memory only)."
    )
    untrained: bool = Field(
        False,
        description="Tests only: run an identity-initialised network with an empty normaliser instead of a "
        "checkpoint. Logged as a warning; never the default.",
    )
    lr: float = Field(
        1e-4, gt=0, description="Initial edit step α of the untrained network (ignored with a checkpoint)."
    )
    protect_locality: bool = Field(
        True, description="Locality prompts sent with an edit join the ridge solve as keys whose output must "
        "not change (desired change 0), so what the client names as unrelated stays put.",
    )
    keep_coef: float | None = Field(
        None, ge=0, description="μ of the keep term (preserve the outputs of ordinary keys); unset = the "
        "checkpoint's value, 0 = the spec's plain ridge.",
    )
    protect_neighbours: int = Field(
        0, ge=0, le=64, description="Subject-keyed checkpoints: per edit, this many derived neighbours (its "
        "prompt with other well-known subjects, editing.probes.derived_neighbours) join the solve as "
        "zero-change prompts.",
    )
    protect_standing: bool = Field(
        False, description="Subject-keyed checkpoints: the shipped standing set of common facts "
        "(editing/probes/standing.json) joins the solve as zero-change prompts.",
    )
    keep_rank: int | None = Field(
        None, ge=0, description="Use only the top eigenpairs of the checkpoint's keep basis (measurements).",
    )
    ridge: float | None = Field(
        None, gt=0, description="λ of the ridge term at edit time; unset = the checkpoint's learned value.",
    )
    key_site: KeySite | None = Field(
        None, description="Tests only, with untrained=true: where keys are read ('answer' positions or the "
        "'subject' last token). A checkpoint fixes its own (its card's key_site).",
    )
    refine_steps: int = Field(
        10, ge=0, description="Subject-keyed checkpoints: most Adam steps that finish the network's desired "
        "changes (each a forward+backward from the lowest edited layer); 0 = one-shot network only.",
    )
    refine_lr: float = Field(0.5, gt=0, description="Adam step size of the refinement.")
    refine_prefixes: tuple[str, ...] = Field(
        (), description="Neutral sentences each edit is also fitted after during refinement, so the change "
        "holds in other contexts than its exact prompt (each one costs about one more refinement; "
        "docs/hypernet.md §5a has what one bought).",
    )
    refine_chat: bool = Field(
        False, description="Refinement also fits each edit as the start of the assistant's turn in the model's "
        "chat template (when it has one), so chat-form questions see it.",
    )
    refine_stop_nll: float = Field(
        0.0, ge=0, description="Refinement stops early once every edit's mean answer-token NLL is below this; "
        "0 = always the full refine_steps (an edit fitted only until its own prompt is sure of it follows "
        "rephrases and chat questions less: docs/hypernet.md §5a).",
    )


EditorKind = Literal["rledit", "malmen"]


class TrainConfig(BaseModel):
    """Everything that defines a hypernetwork training run; stored in the checkpoint card."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    editor: EditorKind = Field("rledit", description="rledit: trajectories on the evolving model; malmen: "
                               "single turns from the base model.")
    modules: str = Field("F", description="Edited modules (preset, groups or dotted names; see HypernetConfig).")
    key_site: KeySite = Field("subject", description="Where keys are read: the last token of each edit's "
                              "subject ('subject', docs/hypernet.md §5a) or the answer-predicting positions "
                              "('answer', the spec's).")
    turns: int = Field(10, ge=1, description="T: turns per trajectory (malmen: independent batches per step).")
    edits_per_turn: int = Field(10, ge=1, description="n: edits per turn.")
    back_depth: int = Field(3, ge=1, description="J: backtracked batches, the current one included (rledit).")
    decay: float = Field(0.95, ge=0, le=1, description="μ: weight μ^j of the batch j turns back.")
    loc_coef: float = Field(3.0, ge=0, description="c_loc: weight of the locality KL.")
    reg_coef: float = Field(0.0, ge=0, description="η: weight of ‖ΔW‖_F² (reaches the network through G).")
    rank: int = Field(256, ge=1, description="r: low-rank width of each residual block.")
    blocks: int = Field(2, ge=1, description="Residual blocks per network.")
    lr: float = Field(1e-3, gt=0, description="Initial edit step α of every module.")
    meta_lr: float = Field(1e-4, gt=0, description="Adam learning rate of the network (A, B, biases, embeddings).")
    alpha_lr: float = Field(
        0.05, gt=0, description="Adam learning rate of each α relative to its initial value (step ≈ alpha_lr·lr)."
    )
    lambda_lr: float = Field(0.05, gt=0, description="Adam learning rate of the log ridge weights λ̃.")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip of the running meta-gradient after every turn.")
    steps: int = Field(10, ge=0, description="Optimizer steps; each rolls out a fresh trajectory from W_0.")
    prime_batches: int = Field(
        20, ge=0, description="Base-model batches that fill the normaliser before the first update."
    )
    keep_rank: int = Field(512, ge=0, description="r: rank of each module's keep basis (0: none, the spec's ridge).")
    keep_coef: float = Field(100.0, ge=0, description="μ: weight of the keep term μ·C₀ in the ridge regulariser.")
    keep_cases: int = Field(640, ge=1, description="Training cases whose ordinary inputs estimate C₀.")
    seed: int = Field(0, description="Seed of the network initialisation and of the data order.")
    chunk_size: int = Field(4096, ge=1, description="Rows of (K, Δ) per network call.")
    save_dtype: Literal["float16", "float32"] = Field("float16", description="dtype of the stored network matrices.")
    checkpoint_every: int = Field(5, ge=1, description="Write a resumable checkpoint every K steps.")
