"""FT-L: constrained fine-tuning of one MLP projection (the baseline editor)."""

from editing.editors.ft.config import FTConfig
from editing.editors.ft.editor import FTEditor
from editing.registry import register_editor

register_editor(name="ft", config_cls=FTConfig, editor_cls=FTEditor)

__all__ = ["FTConfig", "FTEditor"]
