"""Which nn.Linear weights the hypernetwork edits, and how they group into networks by shape.

A module spec is a comma-separated list of items; each item is a preset name, a group
`projection:layers` (layers as `10-14` or `3`, joined with `+`: `up_proj:2+5-7`) resolved with
`editing.targets.mlp_module`, or a dotted module name. Presets A-D are docs/hypernet.md §5's
candidates, E is the set chosen by measurement; they name layers of a 30-layer Llama
(SmolLM2-135M) and fail with TargetNotFoundError on shallower models.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from contract.errors import TargetNotFoundError
from editing.targets import mlp_module

PRESETS: dict[str, str] = {
    "A": "gate_proj:10-14,up_proj:17-23",
    "B": "gate_proj:20-28,up_proj:20-28",
    "C": "down_proj:16-17",
    "D": "down_proj:27-28",
    "E": "down_proj:26-27",  # the answer-keyed default for SmolLM2 (docs/hypernet.md §5)
    "F": "down_proj:4-8",  # the subject-keyed default for SmolLM2 (docs/hypernet.md §5a)
}
PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def _layers(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split("+"):
        first, _, last = part.partition("-")
        out.extend(range(int(first), int(last or first) + 1))
    return out


def _expand(model: nn.Module, item: str) -> list[str]:
    item = item.strip()
    if item in PRESETS:
        return resolve_modules(model, PRESETS[item])
    projection, sep, layers = item.partition(":")
    if sep:
        if projection not in PROJECTIONS:
            raise TargetNotFoundError(f"unknown projection {projection!r} in module spec item {item!r}")
        try:
            return [mlp_module(model, layer, projection) for layer in _layers(layers)]
        except ValueError:
            raise TargetNotFoundError(f"cannot read the layers of module spec item {item!r}") from None
    return [item]


def resolve_modules(model: nn.Module, spec: str) -> list[str]:
    """Dotted names of the edited nn.Linear modules, validated against the model, in spec order."""
    names: list[str] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        names.extend(n for n in _expand(model, item) if n not in names)
    if not names:
        raise TargetNotFoundError(f"the module spec {spec!r} names no module")
    for name in names:
        _linear(model, name)
    return names


def _linear(model: nn.Module, name: str) -> nn.Linear:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise TargetNotFoundError(f"the model has no module {name!r}") from None
    if not isinstance(module, nn.Linear):
        raise TargetNotFoundError(f"{name!r} is a {type(module).__name__}, not an nn.Linear")
    return module


@dataclass(frozen=True)
class Slot:
    """Where a module's network lives: its shape key and its index among that shape's modules."""

    shape: str
    index: int
    d_k: int
    d_v: int


def shape_key(d_k: int, d_v: int) -> str:
    return f"{d_k}x{d_v}"


def slots(model: nn.Module, modules: list[str]) -> dict[str, Slot]:
    """One network per distinct (d_k, d_v); modules of a shape are numbered in list order."""
    out: dict[str, Slot] = {}
    counts: dict[str, int] = {}
    for name in modules:
        linear = _linear(model, name)
        d_k, d_v = linear.in_features, linear.out_features
        key = shape_key(d_k, d_v)
        out[name] = Slot(shape=key, index=counts.get(key, 0), d_k=d_k, d_v=d_v)
        counts[key] = counts.get(key, 0) + 1
    return out


def shapes(module_slots: dict[str, Slot]) -> dict[str, tuple[int, int, int]]:
    """shape key -> (d_k, d_v, number of modules)."""
    out: dict[str, tuple[int, int, int]] = {}
    for slot in module_slots.values():
        count = out.get(slot.shape, (0, 0, 0))[2]
        out[slot.shape] = (slot.d_k, slot.d_v, count + 1)
    return out
