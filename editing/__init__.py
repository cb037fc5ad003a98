"""factpatch's editing core: the model host, the editors (one folder per family), the guard,
probes, datasets and shipped checkpoints. Everything here needs torch; names are imported on
first attribute access so that `import editing` stays cheap.
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
