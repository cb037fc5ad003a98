"""Faster CPU inference for the model's linear layers: oneDNN with weights packed ahead.

Decoding a batch of a few rows on CPU spends most of its time in `nn.functional.linear`
(85 % of a SmolLM2 decoding step), and torch's default fp32 path there reads a plain row-major
weight far below the memory bandwidth. oneDNN's linear on a weight packed once into its blocked
layout (what torch.compile's CPU backend does for a frozen model) decodes the same batch about
1.7× faster on one thread (docs/benchmarks.md).

`LinearPacks.active()` is a context in which, on the calling thread only, every
`nn.functional.linear` whose weight is an fp32 CPU `nn.Parameter`, called without autograd,
runs on that weight's pack. Packs are cached per parameter and made again when the parameter
was written: every in-place write bumps its version counter (`ModelHost.set_master` writes with
`copy_`), and a new storage changes its address. Anything else (gradients on, other dtypes or
devices, temporary weights such as slices) runs torch's default. The results equal the default
path's to float rounding, not bitwise. Costs one packed copy of every weight used.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

logger = logging.getLogger(__name__)

BATCH_HINT = 16  # rows the packed layout is chosen for; any row count works (measured: 8-64 alike)


def supported() -> bool:
    """Whether this torch build has oneDNN and the packed-linear operators."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return all(hasattr(torch.ops.mkldnn, op) for op in ("_reorder_linear_weight", "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


@dataclass
class _Pack:
    version: int
    source: Tensor  # the weight's storage when packed, held so that no other tensor can take its address
    packed: Tensor | None  # None: this weight cannot be packed; torch's default serves it

    def fits(self, weight: Tensor) -> bool:
        return self.version == weight._version and self.source.data_ptr() == weight.data_ptr()


class LinearPacks:
    """The packed weights of one model, made on first use and remade after a write."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled and supported()
        self._packs: dict[int, _Pack] = {}
        self._lock = threading.Lock()

    @contextmanager
    def active(self) -> Iterator[None]:
        """Linear layers called on this thread inside the block use the packs (no autograd only)."""
        if not self.enabled:
            yield
            return
        with _PackedMode(self.linear):
            yield

    @property
    def nbytes(self) -> int:
        """Memory held by the packs."""
        with self._lock:
            packs = [p.packed for p in self._packs.values() if p.packed is not None]
        return sum(t.numel() * t.element_size() for t in packs)

    def linear(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        packed = self._packed(weight) if _eligible(x, weight, bias) else None
        if packed is not None:
            try:
                return _packed_linear(x, packed, bias)
            except RuntimeError as exc:  # an input oneDNN refuses: answer it the default way
                logger.warning("oneDNN linear failed on a %s input (%s); using torch's default", tuple(x.shape), exc)
        return nnf.linear(x, weight, bias)

    def _packed(self, weight: nn.Parameter) -> Tensor | None:
        key = id(weight)
        with self._lock:
            pack = self._packs.get(key)
        if pack is not None and pack.fits(weight):
            return pack.packed
        pack = _Pack(weight._version, weight.detach(), _pack(weight))
        with self._lock:
            if key not in self._packs:
                weakref.finalize(weight, self._forget, key)
            self._packs[key] = pack
        return pack.packed

    def _forget(self, key: int) -> None:
        with self._lock:
            self._packs.pop(key, None)


def _eligible(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    if torch.is_grad_enabled() or not isinstance(weight, nn.Parameter) or weight.dim() != 2 or x.dim() < 2:
        return False
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.layout == torch.strided for t in tensors)


def _packed_linear(x: Tensor, packed: Tensor, bias: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def _pack(weight: Tensor) -> Tensor | None:
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), BATCH_HINT)
    except RuntimeError as exc:  # an unusual shape: this weight stays on torch's default path
        logger.warning("cannot pack a %s linear weight for oneDNN (%s); using torch's default",
                       tuple(weight.shape), exc)
        return None


class _PackedMode(TorchFunctionMode):
    """Sends `nn.functional.linear` to `linear`; everything else runs unchanged."""

    def __init__(self, linear: Callable[[Tensor, Tensor, Tensor | None], Tensor]) -> None:
        super().__init__()
        self._linear = linear

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is nnf.linear:
            x, weight, *rest = args
            return self._linear(x, weight, rest[0] if rest else kwargs.get("bias"))
        return func(*args, **kwargs)
