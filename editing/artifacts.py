"""EditArtifact: what an edit produces and the log stores, as safetensors bytes (never pickle)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load as st_load
from torch import Tensor

from contract.errors import NonFiniteDeltaError

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
        return tensors_to_bytes(self.tensors, metadata)

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


_DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def tensors_to_bytes(tensors: dict[str, Tensor], meta: dict[str, str] | None = None) -> bytes:
    """Safetensors bytes with a canonical header (sorted keys), so equal content gives equal bytes.

    The safetensors library orders metadata arbitrarily; content addressing needs determinism.
    """
    header: dict[str, Any] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        header[name] = {"dtype": _DTYPES[tensor.dtype], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if meta:
        header["__metadata__"] = dict(meta)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def tensors_from_bytes(data: bytes) -> dict[str, Tensor]:
    return dict(st_load(data))
