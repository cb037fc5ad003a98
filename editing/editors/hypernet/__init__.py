"""Hypernetwork editors (MALMEN's network and ridge solve): `rledit` and `malmen`.

Both share one code path at edit time and differ only in how their checkpoint was trained
(`factpatch train --editor rledit|malmen`). See docs/hypernet.md.
"""

from editing.editors.hypernet.config import HypernetConfig
from editing.editors.hypernet.editor import HypernetEditor, MalmenEditor, RLEditEditor
from editing.registry import register_editor

register_editor(name="rledit", config_cls=HypernetConfig, editor_cls=RLEditEditor)
register_editor(name="malmen", config_cls=HypernetConfig, editor_cls=MalmenEditor)

__all__ = ["HypernetConfig", "HypernetEditor", "MalmenEditor", "RLEditEditor"]
