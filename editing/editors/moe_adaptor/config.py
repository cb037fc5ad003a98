"""Configs of the MoE adaptor editors. Defaults are measured on SmolLM2-135M (docs/moe.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from editing.editors.base import EditorConfig


class MoEAdaptorConfig(EditorConfig):
    """What MEMoE and LEMoE share: where the bypass sits, the experts' shape, the optimiser."""

    layer: int | None = Field(None, ge=0, description="Index of the block whose MLP is wrapped; unset = by depth.")
    layer_fraction: float = Field(
        0.59,
        ge=0.0,
        le=1.0,
        description="Relative depth of the wrapped block when `layer` is unset (17 of 30).",
    )
    scale: float = Field(1.0, gt=0, description="lambda: weight of the bypass added to the frozen MLP output.")
    expert_dim: int | None = Field(
        64, ge=1, description="Inner width of each SwiGLU expert; unset = the base MLP's (a dense expert)."
    )
    steps: int = Field(30, ge=1, le=2000, description="Most optimisation steps per edit batch.")
    lr: float = Field(1e-2, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    stop_loss: float = Field(0.03, ge=0, description="Stop once the mean target NLL of the batch is below this.")
    fallback: Literal["skip", "prompt_mean"] = Field(
        "skip",
        description="Inputs that mention no edited subject: skip the bypass, or route on their mean embedding.",
    )
    bypass_tokens: Literal["all", "subject", "from_subject"] = Field(
        "subject",
        description="Positions that get the bypass when an edited subject is found: every token (the "
        "papers), the subject's tokens only, or the subject's tokens and every token after them "
        "(generated ones too).",
    )
    seed: int = Field(0, description="Seed of the adaptor's initial weights (with the batch id for new ones).")


class MEMoEConfig(MoEAdaptorConfig):
    """MEMoE: E shared experts beside one MLP, a top-k gate on [token ; knowledge anchor]."""

    num_experts: int = Field(4, ge=1, le=64, description="E, the number of shared experts.")
    top_k: int = Field(1, ge=1, description="Experts per token (at most num_experts).")
    gate_input: Literal["token_and_anchor", "anchor"] = Field(
        "token_and_anchor",
        description="Gate on [hidden state ; anchor] per token (the paper), or on the anchor alone (one "
        "expert per sequence).",
    )
    gate_noise: float = Field(0.0, ge=0, description="Std of Gaussian noise on the gate logits in training only.")
    replay: int = Field(
        20, ge=0, description="Earlier edits re-trained with every batch (0 = the paper: only the new batch)."
    )


class LEMoEConfig(MoEAdaptorConfig):
    """LEMoE: one new expert per batch, earlier ones frozen, key-matching (KV anchor) routing."""

    expert_dim: int | None = Field(32, ge=1, description="Inner width of each expert; unset = dense.")
    bypass_tokens: Literal["all", "subject", "from_subject"] = Field(
        "from_subject",
        description="Positions that get the bypass when an edited subject is found: every token, the "
        "subject's tokens only, or the subject's tokens and every token after them (generated ones too; "
        "the default: with chat-form training, fluent chat answers; docs/benchmarks.md).",
    )
    routing_input: Literal["prompt_mean", "subject"] = Field(
        "subject",
        description="Instance embedding: mean input embedding of the prompt (the paper), or of the edited "
        "subject it mentions (knowledge anchor; prompts without one follow `fallback`).",
    )
    proj_ratio: int = Field(4, ge=1, description="Routing projection bottleneck d -> d/ratio -> d.")
    train_mixture: Literal["soft", "hard"] = Field(
        "hard",
        description="LM loss through the new expert alone at weight 1, as top-1 inference applies it "
        "(routing is trained separately and checked), or through a softmax mixture of all experts (old "
        "ones frozen; the spec's proposal, whose train/inference gap grows with the number of experts).",
    )
    route_temperature: float = Field(0.1, gt=0, description="Temperature of the softmax over cosine key scores.")
    route_weight: float = Field(1.0, ge=0, description="Weight of the routing cross-entropy term.")
    threshold: bool = Field(False, description="Out-of-scope gate (spec section 9): skip below a calibrated score.")
    threshold_alpha: float = Field(
        0.01, gt=0, lt=1, description="Share of calibration prompts allowed above a new expert's threshold."
    )
    calibration_file: str | None = Field(
        None, description="JSON list of unrelated prompts for the threshold; unset = the built-in set."
    )
    train_chat: bool = Field(
        True, description="Also train each edit inside the model's chat template (when it has one): the "
        "prompt asked as a user turn, answered by the assistant starting with the prompt, so chat-form "
        "questions see the edit (docs/benchmarks.md: chat questions 0.54 -> 0.81 on the well-known set).",
    )
