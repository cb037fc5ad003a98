"""Default target modules keyed by architecture (`model.config.model_type`)."""

from __future__ import annotations

from torch import nn

# How to reach the list of transformer blocks, per model family.
LAYER_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "phi3": "model.layers",
    "olmo": "model.layers",
}
# Gated MLP projection names (Llama convention).
MLP_PATH = "mlp"


def layer_path(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", "")
    return LAYER_PATHS.get(model_type, "model.layers")


def num_layers(model: nn.Module) -> int:
    return len(model.get_submodule(layer_path(model)))  # type: ignore[arg-type]


def layer_at(model: nn.Module, fraction: float) -> int:
    """The block at a relative depth (0 = first, 1 = last)."""
    n = num_layers(model)
    return min(n - 1, max(0, round(fraction * (n - 1))))


def mlp_module(model: nn.Module, layer: int, projection: str) -> str:
    """Dotted name of an MLP projection, e.g. `model.layers.20.mlp.down_proj`."""
    return f"{layer_path(model)}.{layer}.{MLP_PATH}.{projection}"


def mlp_block(model: nn.Module, layer: int) -> str:
    return f"{layer_path(model)}.{layer}.{MLP_PATH}"
