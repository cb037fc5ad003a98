"""Running part of a decoder: the shortcut both training loops take.

While an edit is fitted, the layers below the edited one never change, so what enters that layer
is computed once and only the layers above run per step. The hypernetwork's training cache
(`editors/hypernet/prefix.py`) keeps each example's hidden state across batches and re-enters the
decoder with `inputs_embeds`; the MoE adaptors' tail (`editors/moe_adaptor/training_tail.py`) keeps one
batch's layer inputs with the keyword arguments the layer received and runs the blocks itself.
Both end the capturing forward pass early the same way, with the helpers here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn
from torch.utils.hooks import RemovableHandle

from editing.targets import layer_path


class StopForwardError(Exception):
    """Raised by a hook once it has what it needs: the rest of the forward pass is skipped."""


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of decoder blocks."""
    layers = model.get_submodule(layer_path(model))
    assert isinstance(layers, nn.ModuleList)
    return layers


def final_norm(model: nn.Module) -> nn.Module:
    """The norm after the last block (the sibling of the block stack)."""
    parent = layer_path(model).rpartition(".")[0]
    return model.get_submodule(f"{parent}.norm" if parent else "norm")


def forward_until_stopped(run: Callable[[], object], handles: Sequence[RemovableHandle]) -> None:
    """Run a forward pass that one of `handles`' hooks ends with StopForwardError; remove them all."""
    try:
        run()
    except StopForwardError:
        pass
    finally:
        for handle in handles:
            handle.remove()
