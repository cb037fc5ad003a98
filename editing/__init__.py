"""factpatch's editing library: model host, editors, edit log, datasets and evaluation.

Torch-free modules (protocol, errors, config, log, queue) import eagerly; everything that needs
torch is imported on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EditArtifact", "ModelHost", "build_editor", "editor_names", "get_editor", "load_host"]

_LAZY = {
    "EditArtifact": "editing.artifacts",
    "ModelHost": "editing.host",
    "load_host": "editing.loading",
    "build_editor": "editing.registry",
    "editor_names": "editing.registry",
    "get_editor": "editing.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'editing' has no attribute {name!r}")
