"""EditArtifact: what an edit produces and the log stores, as safetensors bytes (never pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from editing.errors import NonFiniteDeltaError

_RESERVED = ("factpatch.editor", "factpatch.version", "factpatch.meta")


@dataclass
class EditArtifact:
    """Named tensors plus JSON-able metadata, produced by `Editor.compute`."""

    editor: str
    version: str
    tensors: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        metadata = {
            "factpatch.editor": self.editor,
            "factpatch.version": self.version,
            "factpatch.meta": json.dumps(self.meta, sort_keys=True),
        }
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.tensors.items()}
        return bytes(st_save(tensors, metadata=metadata))

    @classmethod
    def from_bytes(cls, data: bytes) -> EditArtifact:
        metadata = _metadata(data)
        return cls(
            editor=metadata["factpatch.editor"],
            version=metadata["factpatch.version"],
            tensors=dict(st_load(data)),
            meta=json.loads(metadata.get("factpatch.meta", "{}")),
        )

    def check_finite(self) -> None:
        """Raise before anything touches the model when a tensor holds NaN or inf."""
        for name, tensor in self.tensors.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise NonFiniteDeltaError(f"the edit produced non-finite values in {name}")

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def _metadata(data: bytes) -> dict[str, str]:
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    return dict(header.get("__metadata__", {}))


def tensors_to_bytes(tensors: dict[str, Tensor], meta: dict[str, str] | None = None) -> bytes:
    """Plain safetensors bytes (snapshots)."""
    return bytes(st_save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta))


def tensors_from_bytes(data: bytes) -> dict[str, Tensor]:
    return dict(st_load(data))
