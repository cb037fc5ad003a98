"""Mixture-of-experts adaptor editors: MEMoE (shared experts) and LEMoE (one expert per batch)."""

from editing.editors.moe_adaptor.config import LEMoEConfig, MEMoEConfig
from editing.editors.moe_adaptor.lemoe import LEMoEEditor
from editing.editors.moe_adaptor.memoe import MEMoEEditor
from editing.registry import register_editor

register_editor(name="memoe", config_cls=MEMoEConfig, editor_cls=MEMoEEditor)
register_editor(name="lemoe", config_cls=LEMoEConfig, editor_cls=LEMoEEditor)

__all__ = ["LEMoEConfig", "LEMoEEditor", "MEMoEConfig", "MEMoEEditor"]
