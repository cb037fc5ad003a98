"""Text in tensors: editor state and artifacts are safetensors, so strings travel as UTF-8 bytes."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import Tensor


def text_tensor(text: str) -> Tensor:
    """(n,) uint8 UTF-8 bytes of `text`."""
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)


def tensor_text(tensor: Tensor) -> str:
    assert tensor.dtype == torch.uint8 and tensor.dim() == 1
    return bytes(tensor.cpu().tolist()).decode("utf-8")


def json_tensor(value: Any) -> Tensor:
    """Canonical JSON (sorted keys, no spaces) as uint8 bytes: equal values give equal tensors."""
    return text_tensor(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def tensor_json(tensor: Tensor) -> Any:
    return json.loads(tensor_text(tensor)) if tensor.numel() else None
